"""ITRA inside other training libraries, each behind an optional extra.

- `itra.integrations.transformers`: `ITRATrainer`, a Hugging Face `Trainer` that adds λ·Match to the
  model's cross-entropy (`pip install 'itra[hf]'`).
- `itra.integrations.lightning`: `ITRAModule`, a `LightningModule` that trains CE(S1) + λ·Match on an
  independent S2, and `PairedDataModule`, its S1/S2 pairs (`pip install 'itra[lightning]'`).
"""
