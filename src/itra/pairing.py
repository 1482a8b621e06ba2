"""Where a training step's second mini-batch S2 comes from: the `--pairing` modes of ITRA.

Eq. (4) is `CE(C(E(S1))) + λ·Match(E(S1), E(S2))` with S2 an independent mini-batch whose features
come from the current extractor, with gradient. The modes differ in how S2's features are obtained,
and so in what a step costs; `Objective` does the passes, `PreviousBatch` holds `previous`'s S2.

- `independent` (default; the paper): S2 is drawn from its own stream (`PairedLoader`) and gets its own
  forward and backward pass. Each batch is normalised by its own batch-norm statistics; both
  passes update the running statistics (two updates per step), as itra always did.
- `detached`: the same S2 and the same forward pass (train mode, so its features equal
  `independent`'s and its running-statistic update is the same), under `torch.no_grad()`: the
  match's gradient flows through S1's features only, as in the paper's gradient analysis (Eq. (7)-(9),
  written for a sample of S1). Saves S2's backward pass.
- `previous`: S2 is the previous step's S1: its features, detached (computed by the previous step's
  parameters: one step stale), and its labels. No S2 is drawn and there is no extra pass. The first
  step of a run has no previous batch: its match term is 0 (a CE-only step). The kept batch is part of
  the checkpoint, so a resumed run continues exactly.
- `split`: one batch of 2m (m = `--batch-size`) in one forward pass, cut into S1, its first ⌈n/2⌉
  samples, and S2, the rest: the CE is over all 2m samples, the match between the halves, with gradient
  through both. Both halves are normalised by the statistics of the whole batch. An epoch is
  ⌈N/2m⌉ steps, the same samples and passes as CE at batch 2m; the cosine schedule, the λ warm-up and
  the compactness probe count these steps; `--lr` is not rescaled. A one-sample batch (an epoch's last,
  when N = 1 mod 2m) has no S2: its match term is 0.

Under torchrun, `--match-ranks global` matches each rank's S1 against the S2 of all ranks, whatever the mode
(`itra.distributed`); a mode whose S2 is the S1 of the other processes is not built.
"""
from __future__ import annotations

import torch

PAIRINGS = ("independent", "detached", "previous", "split", "ranks")
DRAWN = ("independent", "detached")  # the modes whose S2 the loader draws
ONE_PROCESS = tuple(mode for mode in PAIRINGS if mode != "ranks")  # the modes of one process (ranks: torchrun)
UNDRAWN_S2 = {"previous": "the previous S1 (--batch-size samples)", "split": "half the batch (--batch-size samples)",
              "ranks": "the other ranks' S1"}  # what the other modes' S2 is


def check_pairing(pairing: str) -> None:
    if pairing not in PAIRINGS:
        raise ValueError(f"Expected `pairing` in {', '.join(PAIRINGS)}, but got {pairing!r}")


def samples_per_step(pairing: str, batch_size: int) -> int:
    """How many samples of the epoch's pass one step takes: 2m with `split`, else m."""
    return 2 * batch_size if pairing == "split" else batch_size


def split_halves(features: torch.Tensor, labels: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """`split`'s S1 and S2 of one batch, features (n, D) and labels (n,): `(h1, y1, h2, y2)` with the
    first ⌈n/2⌉ samples in S1 and the others in S2; None for a one-sample batch (no S2)."""
    half = -(-len(labels) // 2)
    if half == len(labels):
        return None
    return features[:half], labels[:half], features[half:], labels[half:]


class PreviousBatch:
    """`previous`'s S2: the features (n, D) and labels (n,) of the last step's S1, without their graph."""

    def __init__(self) -> None:
        self.batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def swap(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The kept batch (None at a run's first step), replaced by this step's, detached."""
        kept, self.batch = self.batch, (features.detach(), labels.detach())
        return kept

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint keeps: the batch, or nothing before the first step (and with other pairings)."""
        return {} if self.batch is None else dict(zip(("features", "labels"), self.batch))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.batch = (state["features"], state["labels"]) if state else None
