"""Where a training step's second mini-batch S2 comes from: the `--pairing` modes of ITRA.

Eq. (4) is `CE(C(E(S1))) + λ·Match(E(S1), E(S2))` with S2 an independent mini-batch whose features
come from the current extractor, with gradient. The modes differ in how S2's features are obtained,
and so in what a step costs; `Objective` does the passes, `PreviousBatch` holds `previous`'s S2.

- `independent` (default; the paper): S2 is drawn from its own stream (`PairedLoader`) and gets its own
  forward and backward pass. Each batch is normalised by its own batch-norm statistics; what else S2's
  pass may change is `--s2-state` (below).
- `detached`: the same S2 and the same forward pass (train mode, so its features equal
  `independent`'s and it changes the model's state as `independent`'s does), under `torch.no_grad()`: the
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

What S2's pass changes besides the match (`--s2-state`, `S2_STATES`; `Objective` builds the pairs of every mode
whose entry draws S2 inside it, so a registered one honours it too): with "update"
(as itra always did) S2 is forwarded like S1, so it updates the batch-norm running statistics (a second
`running_mean`/`running_var` update and `num_batches_tracked` increment per step), its dropout draws come from
the global random stream (shifting the masks of every later S1) and its augmentation from the run's augmentation
generator (shifting S1's later augmentations). With "keep" S2 is still normalised by its own batch statistics and
gets fresh dropout masks and augmentations, but leaves the model's buffers, the global random stream and the
augmentation generator as they were: a run at λ = 0 is then CE's run, bit for bit.

Under torchrun, `--match-ranks global` matches each rank's S1 against the S2 of all ranks, whatever the mode
(`itra.distributed`); a mode whose S2 is the S1 of the other processes is not built.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator, Optional, Protocol

import torch
from torch import nn

from itra.distributed import gather_others, gather_others_with_grad
from itra.errors import BadValue
from itra.registries import check_new, entry

Pair = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # (h1 (B, D), y1 (B,), h2 (B2, D), y2 (B2,))


class Passes(Protocol):
    """What a pairing needs of the objective: its passes (`Objective` is one), where it matches, `previous`'s batch."""

    match_at: str
    previous: "PreviousBatch"

    def layers(self, *inputs: torch.Tensor) -> list[torch.Tensor]: ...

    def extract(self, *inputs: torch.Tensor) -> torch.Tensor: ...


# How a mode builds the (h1, y1, h2, y2) of every matched exit (`layers1`: the last, or all) from S1's
# representations, its labels and the loader's S2 (None unless the mode draws it); None: this step has no S2.
PairBuilder = Callable[[Passes, list[torch.Tensor], torch.Tensor, Optional[tuple[torch.Tensor, ...]]], Optional[list[Pair]]]


@dataclass(frozen=True)
class PairingSpec:
    """One `--pairing` mode: how it builds a step's pairs and what it asks of the rest of the config."""

    pairs: PairBuilder
    draws_second_batch: bool = False  # whether the loader draws S2 (and `--second-batch-size` sizes it)
    second_batch: str = ""  # what S2 is when the loader does not draw it (error messages)
    batches_per_step: int = 1  # S1 batches of --batch-size one step takes from the epoch (split: 2)
    min_processes: int = 1  # processes it needs (ranks: 2, under torchrun)
    every_exit: bool = True  # whether it can match at every exit (--match-at every)
    global_ranks: bool = True  # whether it can match against every rank's S2 (--match-ranks global)
    # whether S2 is drawn over the whole training set like S1 (or is a past S1), so that a batch covering the set
    # makes S2 the same samples as S1 and the match 0
    whole_set: bool = True


def _drawn(detached: bool) -> PairBuilder:
    def pairs(passes: Passes, layers1: list[torch.Tensor], y1: torch.Tensor,
              second: Optional[tuple[torch.Tensor, ...]]) -> list[Pair]:
        assert second is not None, "the objective passes the loader's S2 to a mode that draws it"
        *inputs2, y2 = second
        with torch.no_grad() if detached else contextlib.nullcontext():
            layers2 = passes.layers(*inputs2) if passes.match_at == "every" else [passes.extract(*inputs2)]
        return [(h1, y1, h2, y2) for h1, h2 in zip(layers1, layers2)]

    return pairs


def _previous(passes: Passes, layers1: list[torch.Tensor], y1: torch.Tensor, second: object) -> list[Pair] | None:
    kept = passes.previous.swap(layers1[-1], y1)  # one matched exit (the config refuses --match-at every)
    return None if kept is None else [(layers1[-1], y1, *kept)]


def _split(passes: Passes, layers1: list[torch.Tensor], y1: torch.Tensor, second: object) -> list[Pair] | None:
    halves = [split_halves(h1, y1) for h1 in layers1]
    return None if halves[0] is None else halves  # type: ignore[return-value]


def _ranks(passes: Passes, layers1: list[torch.Tensor], y1: torch.Tensor, second: object) -> list[Pair]:
    labels2 = gather_others(y1)
    return [(h1, y1, gather_others_with_grad(h1), labels2) for h1 in layers1]


PAIRINGS: dict[str, PairingSpec] = {
    "independent": PairingSpec(_drawn(detached=False), draws_second_batch=True),
    "detached": PairingSpec(_drawn(detached=True), draws_second_batch=True),
    "previous": PairingSpec(_previous, second_batch="the previous S1 (--batch-size samples)", every_exit=False),
    "split": PairingSpec(_split, second_batch="half the batch (--batch-size samples)", batches_per_step=2,
                         whole_set=False),
    "ranks": PairingSpec(_ranks, second_batch="the other ranks' S1", min_processes=2, global_ranks=False,
                         whole_set=False),
}
DEFAULT_PAIRING = "independent"
ONE_PROCESS = tuple(name for name, spec in PAIRINGS.items() if spec.min_processes == 1)  # the built-in modes of one process


def register_pairing(name: str, spec: PairingSpec) -> None:
    """Add a `--pairing` mode: it can then be trained and swept like the built-in ones (see tests/test_pairing.py)."""
    check_new(PAIRINGS, name, "A pairing")
    PAIRINGS[name] = spec


def check_pairing(pairing: str) -> PairingSpec:
    return entry(PAIRINGS, "pairing", pairing)


def check_match_at(pairing: str, match_at: str | None) -> None:
    """`--match-at every` only with a pairing whose entry can match at every exit (`PairingSpec.every_exit`): the
    rule `resolve` checks of a config and `Objective` of its arguments."""
    if match_at == "every" and not PAIRINGS[pairing].every_exit:
        every = ", ".join(mode for mode, spec in PAIRINGS.items() if spec.every_exit)
        raise BadValue(f"Expected a pairing that can match at every exit ({every}) with --match-at every, but got "
                       f"{pairing} (it keeps the last exit's features only)")


def samples_per_step(pairing: str | None, batch_size: int) -> int:
    """How many samples of the epoch's pass one step takes: 2m with `split`, else m (None: a method without S2)."""
    return batch_size * (1 if pairing is None else PAIRINGS[pairing].batches_per_step)


def split_halves(features: torch.Tensor, labels: torch.Tensor) -> Pair | None:
    """`split`'s S1 and S2 of one batch, features (n, D) and labels (n,): `(h1, y1, h2, y2)` with the
    first ⌈n/2⌉ samples in S1 and the others in S2; None for a one-sample batch (no S2)."""
    half = -(-len(labels) // 2)
    if half == len(labels):
        return None
    return features[:half], labels[:half], features[half:], labels[half:]


@contextlib.contextmanager
def state_kept(model: nn.Module, device: torch.device) -> Iterator[None]:
    """A forward pass through `model` (on `device`) that leaves the state it found: every buffer (batch-norm running
    statistics, `num_batches_tracked`) is put back afterwards, and the pass draws its random numbers (dropout) from
    a stream of its own, seeded from the global stream's state, which it leaves where it was. Batch norm in train
    mode still normalises by the batch's own statistics, and the draws are deterministic given the seed.

    Example:
        >>> bn = nn.BatchNorm1d(2).train()
        >>> with state_kept(bn, torch.device("cpu")):
        ...     _ = bn(torch.randn(4, 2))
        >>> int(bn.num_batches_tracked), bn.running_mean.tolist()
        (0, [0.0, 0.0])
    """
    buffers = list(model.buffers())
    saved = [buffer.clone() for buffer in buffers]
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            seed = seed_of(torch.default_generator)  # restored when the fork ends
            torch.default_generator.manual_seed(seed)
            for index in cuda:
                torch.cuda.default_generators[index].manual_seed(seed)
            yield
    finally:
        for buffer, value in zip(buffers, saved):
            # Through `.data`, as batch norm updates its statistics itself: S1's pass saved them for its backward,
            # which in train mode does not read them, and a copy that counts as an in-place change would make
            # autograd refuse.
            buffer.data.copy_(value)


def seed_of(generator: torch.Generator) -> int:
    """A seed that is a function of `generator`'s state, which it leaves as it is: a hash of the state's bytes (held on
    the host for every device's generator), so drawing it reads nothing back from a device and shifts no draw."""
    state = generator.get_state().numpy().tobytes()
    return int.from_bytes(hashlib.blake2b(state, digest_size=8).digest(), "little") >> 2  # < 2**62


def forked(generator: torch.Generator) -> torch.Generator:
    """A generator seeded from `generator`'s state (`seed_of`), which is left where it was: draws (S2's augmentation)
    that do not shift the ones `generator` makes next (S1's)."""
    return torch.Generator(generator.device).manual_seed(seed_of(generator))


@dataclass(frozen=True)
class S2State:
    """One `--s2-state`: the context of S2's forward pass, given the model and its device, and the generator of
    S2's augmentation, given the run's."""

    forward: Callable[[nn.Module, torch.device], ContextManager[None]]
    augment: Callable[[torch.Generator], torch.Generator]


S2_STATES: dict[str, S2State] = {
    "update": S2State(lambda model, device: contextlib.nullcontext(), lambda generator: generator),  # as itra always did
    "keep": S2State(state_kept, forked),
}
# "keep" since 0.4. Measured (RESULTS, issue 32): on a model without dropout or augmentation the two passes train the same
# weights bit for bit and differ only in the batch-norm running statistics that evaluation uses, which "update" moves
# twice a step (a faster moving average). That inflates short runs (Fashion-MNIST, 8 steps: 48.2 % against CE's 39.4 %
# at λ = 0) for a reason that has nothing to do with matching, and is level with "keep" at 3,160 steps. With "keep"
# ITRA's difference to CE is the matching loss's (and, with dropout, S2's own draws), and λ = 0 is CE's run.
DEFAULT_S2_STATE = "keep"


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
