"""The checkpoint, assembled from the `state_dict` of the parts that own state, and read back into them.

    {"version": 2, "epoch", "elapsed_s", "identity",
     <one entry per shared part: "model", "regularizer", "optimizer", "schedule", "scaler", "callbacks">,
     "ranks": [{<one entry per part of each rank: "random", "previous_batch">}, ...]}   # rank 0 first

A part is anything with `state_dict()` and `load_state_dict(state)`; `train.fit` names them, and adding one
(a stateful callback, a new regulariser) never edits this module or the loop. Shared parts are the same on
every rank (rank 0's is kept); a rank's own parts are its random streams (`RandomStreams`) and `previous`'s
kept batch. "identity" says whose the checkpoint is (`rundir.identity`: the run's config and the metrics rows it
follows; absent in itra up to 0.3.0), which `rundir.load_checkpoint` checks. Checkpoints of itra before version 2
(every rank's random states as top-level keys) are read by `upgrade`; `checked` refuses anything else.
"""
from __future__ import annotations

import random
from typing import Any, Mapping, Protocol

import numpy as np
import torch
from itra.errors import BadValue, first_line

VERSION = 2


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class NoState:
    """A part that keeps nothing (a method without a regulariser, float32 without a scaler)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SavedOnCPU:
    """`part`'s tensors saved on the CPU in the checkpoint (portable across devices and ranks), put back on `device`."""

    def __init__(self, part: Stateful, device: torch.device) -> None:
        self.part, self.device = part, device

    def state_dict(self) -> dict[str, Any]:
        return {name: value.cpu() for name, value in self.part.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.part.load_state_dict({name: value.to(self.device) for name, value in state.items()})


class RandomStreams:
    """Every random stream of one rank that is not a function of (seed, epoch): torch's CPU generator (dropout
    on the CPU, `DataLoader`'s worker seeds), the CUDA generator of this rank's device (dropout on CUDA), the
    augmentation generator, and Python's `random` and numpy's global generator (itra draws from neither; a
    user's dataset or model may). S1, S2, label noise and the probes come from `epoch_generator(seed, epoch,
    stream)`: the checkpoint's epoch rebuilds them."""

    def __init__(self, augment: torch.Generator, device: torch.device) -> None:
        self.augment, self.device = augment, device

    def state_dict(self) -> dict[str, Any]:
        version, keys, gauss = random.getstate()
        kind, words, position, has_gauss, cached = np.random.get_state()
        return {"torch": torch.get_rng_state(), "augment": self.augment.get_state(),
                **({"cuda": torch.cuda.get_rng_state(self.device)} if self.device.type == "cuda" else {}),
                "python": {"version": version, "keys": torch.tensor(keys), "gauss": gauss},
                "numpy": {"words": torch.from_numpy(words.astype(np.int64)), "position": position,
                          "has_gauss": has_gauss, "cached": cached}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        self.augment.set_state(state["augment"])
        if "cuda" in state and self.device.type == "cuda":  # a run started on the CPU starts CUDA's from the seed
            torch.cuda.set_rng_state(state["cuda"], self.device)
        if "python" in state:  # absent before version 2
            python = state["python"]
            random.setstate((python["version"], tuple(python["keys"].tolist()), python["gauss"]))
            numpy = state["numpy"]
            np.random.set_state(("MT19937", numpy["words"].numpy().astype(np.uint32), numpy["position"],
                                 numpy["has_gauss"], numpy["cached"]))


def rank_state(parts: Mapping[str, Stateful]) -> dict[str, Any]:
    """This rank's share of the checkpoint: what rank 0 gathers from every rank."""
    return {name: part.state_dict() for name, part in parts.items()}


def assemble(progress: dict[str, Any], shared: Mapping[str, Stateful], ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint: `progress` (epoch, elapsed seconds), every shared part's state, and `ranks` (`rank_state`
    of every rank, in rank order)."""
    return {"version": VERSION, **progress, **rank_state(shared), "ranks": ranks}


class PartMismatch(ValueError):
    """A saved state that does not fit its part (e.g. weights of another model); `part` names it."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"the {part} state does not fit ({reason})")
        self.part, self.reason = part, reason


def restore(saved: dict[str, Any], shared: Mapping[str, Stateful], own: Mapping[str, Stateful], rank: int) -> None:
    """Load every shared part, and this rank's own parts, from `saved` (of any version); raises `PartMismatch`
    for a state that does not fit its part: what `load_state_dict` raises for one (a module: RuntimeError; an
    optimizer of other parameter groups: ValueError; a state without a key its part reads: KeyError)."""
    saved = upgrade(saved)
    for parts, states in ((shared, saved), (own, saved["ranks"][rank])):
        for name, part in parts.items():
            try:
                part.load_state_dict(states.get(name, {}))
            except (RuntimeError, ValueError, KeyError) as error:
                raise PartMismatch(name, first_line(error).rstrip(":")) from None


def upgrade(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of any version in this version's layout. Before version 2, rank 0's random states and
    kept batch were top-level keys and the other ranks' in "other_ranks"; no callback kept state."""
    if saved.get("version") == VERSION:
        return saved
    if "version" in saved:
        raise BadValue(f"checkpoint version {saved['version']} is newer than this itra's {VERSION}: upgrade itra")
    ranks = [{"random": {"torch": own["rng"], "augment": own["augment_rng"],
                         **({"cuda": own["cuda_rng"]} if "cuda_rng" in own else {})},
              "previous_batch": own.get("previous_batch", {})} for own in (saved, *saved.get("other_ranks", []))]
    shared = {name: value for name, value in saved.items()
              if name not in ("rng", "augment_rng", "cuda_rng", "previous_batch", "other_ranks")}
    return {**shared, "version": VERSION, "callbacks": {}, "ranks": ranks}


def checked(saved: Any) -> dict[str, Any]:
    """`saved` (what `torch.load` read) in this version's layout (`upgrade`), after checking that it is a checkpoint:
    a dict with an integer "epoch" >= 0, "elapsed_s", the "model"'s tensors and a state for each rank. Raises
    ValueError saying what is wrong (`BadValue` for a checkpoint of a newer itra).

    >>> checked({"version": 2, "epoch": 1, "elapsed_s": 0.5, "model": {}, "ranks": [{}]})["epoch"]
    1
    >>> checked([1, 2])
    Traceback (most recent call last):
    ValueError: it holds a list, not a checkpoint
    """
    if not isinstance(saved, dict):
        raise ValueError(f"it holds a {type(saved).__name__}, not a checkpoint")
    if "version" in saved:
        _require(saved, "version", int)
    else:  # the layout before version 2
        _require(saved, "rng", torch.Tensor)
        _require(saved, "augment_rng", torch.Tensor)
    saved = upgrade(saved)
    for key, kind in (("epoch", int), ("elapsed_s", (int, float)), ("model", dict), ("ranks", list)):
        _require(saved, key, kind)
    if saved["epoch"] < 0 or not saved["ranks"] or not all(isinstance(rank, dict) for rank in saved["ranks"]):
        raise ValueError(f"its epoch ({saved['epoch']}) or its ranks' states are not those of a checkpoint")
    if not all(isinstance(value, torch.Tensor) for value in saved["model"].values()):
        raise ValueError("its 'model' holds something other than tensors")
    return saved


def _require(saved: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> None:
    value = saved.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"its {key!r} is {'missing' if value is None else f'a {type(value).__name__}'}")
