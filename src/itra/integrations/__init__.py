"""ITRA inside other training libraries, each behind an optional extra.

- `itra.integrations.transformers`: `ITRATrainer`, a Hugging Face `Trainer` that adds λ·Match to the
  model's cross-entropy (`pip install 'itra[hf]'`).
"""
