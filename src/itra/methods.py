"""What each training method is, in one table, and the `Objective` that computes one step's loss.

Every method is `CE(C(E(x1)), y1) + lam * R(h1, y1, h2, y2)`: the cross-entropy of mini-batch S1
(with label smoothing for LSR) plus, for a method with a regulariser R, its weighted term; ITRA's R
matches the features of S1 against those of an independent S2 (Eq. (4) and (6)), which is never in
the CE. `METHODS` says per method what it reads from the config and how to build its R; the trainer,
the report, the presets and the CLI read method facts from it and nowhere else. A new regulariser
is one `register_method` call (see `tests/test_methods.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from itra.losses import CenterLoss, ITRALoss
from itra.models import Classifier

if TYPE_CHECKING:  # config imports this module for the method names
    from itra.config import TrainConfig

Batch = tuple[torch.Tensor, ...]  # (*inputs, labels)
# A regulariser is an nn.Module called as `R(h1, y1, h2=None, y2=None)` -> scalar, with a
# `needs_second_batch` attribute; it is built from (config, num_classes, feature_dim).
RegularizerFactory = Callable[["TrainConfig", int, int], nn.Module]


@dataclass(frozen=True)
class MethodSpec:
    """One training method: how tables name it and what it reads, logs and builds."""

    label: str  # as tables and figures name it
    colour: str  # matplotlib colour of its lines; `shades` (a colour map) when several strengths are drawn
    shades: str = "Greys"
    fields: tuple[str, ...] = ()  # the config fields it reads beyond the common ones
    strength: Optional[str] = None  # the field that sets how strongly it acts (lam, smoothing): labels, λ studies
    term: Optional[str] = None  # its regulariser's term, logged as `train_<term>`
    needs_second_batch: bool = False  # whether its regulariser matches S1 against S2
    regularizer: Optional[RegularizerFactory] = None


def _center(config: "TrainConfig", num_classes: int, feature_dim: int) -> nn.Module:
    return CenterLoss(num_classes, feature_dim, config.center_alpha, validate_args=False)


def _itra(conditional: bool) -> RegularizerFactory:
    def build(config: "TrainConfig", num_classes: int, feature_dim: int) -> nn.Module:
        return ITRALoss(conditional, config.typed_bandwidth, num_classes, validate_args=False,
                        squared=config.match == "mmd2")

    return build


_ITRA_FIELDS = ("lam", "bandwidth", "match", "lam_warmup", "second_batch_size")
METHODS: dict[str, MethodSpec] = {
    "ce": MethodSpec("CE", "tab:gray"),
    "lsr": MethodSpec("LSR", "tab:orange", "Oranges", ("smoothing",), "smoothing"),
    "center": MethodSpec("Center", "tab:green", "Greens", ("lam", "center_alpha"), "lam", "center",
                         regularizer=_center),
    "itra": MethodSpec("ITRA", "tab:purple", "Purples", _ITRA_FIELDS, "lam", "match", True, _itra(False)),
    "itra-c": MethodSpec("ITRA-c", "tab:blue", "Blues", _ITRA_FIELDS, "lam", "match", True, _itra(True)),
}
REFERENCE = "ce"  # the method every other is compared with (step-time ratios, reference levels in studies)
STRENGTH_SYMBOLS = {"lam": "λ", "smoothing": "ε"}


def method_fields() -> set[str]:
    """Config fields that some method reads (a method resets those it does not read to their defaults)."""
    return {name for spec in METHODS.values() for name in spec.fields}


def register_method(name: str, spec: MethodSpec) -> None:
    """Add a method to `METHODS`: it can then be trained, swept and reported like the built-in ones.
    (`TrainConfig` checks that the fields it reads exist.)"""
    if name in METHODS:
        raise ValueError(f"A method named {name!r} exists already")
    METHODS[name] = spec


def variant_label(config: "TrainConfig") -> str:
    """A run's method with every field it reads that differs from its default, its strength aside:
    `ITRA-c`, `ITRA-c (bandwidth batch, match mmd2)`. Runs of one variant differ only by strength."""
    spec = METHODS[config.method]
    defaults = type(config)()
    changed = [f"{name} {getattr(config, name)}" for name in spec.fields
               if name != spec.strength and getattr(config, name) != getattr(defaults, name)]
    return spec.label + (f" ({', '.join(changed)})" if changed else "")


def method_label(config: "TrainConfig") -> str:
    """How tables and figures name a run's method: `CE`, `LSR ε=0.1`, `ITRA-c λ=0.6`,
    `ITRA-c (bandwidth batch) λ=0.6`."""
    spec = METHODS[config.method]
    if spec.strength is None:
        return variant_label(config)
    return f"{variant_label(config)} {STRENGTH_SYMBOLS.get(spec.strength, spec.strength)}={getattr(config, spec.strength):g}"


class Objective(nn.Module):
    """The loss of one training step, and the only code that knows the model's anatomy.

    `forward(S1, S2)` returns the named terms: "ce", the regulariser's term (e.g. "match"), and
    "loss" = ce + lam * term. S2 goes through the extractor in a pass of its own, so it touches
    neither the CE nor S1's batch-norm statistics. `embed` gives features and logits for evaluation.
    The regulariser's state (Center loss's centres) is part of this module's state.
    """

    def __init__(self, model: Classifier, regularizer: nn.Module | None = None, lam: float = 0.0,
                 label_smoothing: float = 0.0, term: str = "regularizer") -> None:
        super().__init__()
        self.model = model
        self.regularizer = regularizer
        self.lam = lam
        self.label_smoothing = label_smoothing
        self.term = term

    @property
    def needs_second_batch(self) -> bool:
        return self.regularizer is not None and bool(self.regularizer.needs_second_batch)

    def embed(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features h (B, D) and logits (B, K) of one batch of inputs."""
        features = self.model.extractor(*inputs)
        return features, self.model.head(features)

    def forward(self, first: Batch, second: Batch | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one step on S1 = `(*inputs, y1)` and, when the regulariser needs it, S2."""
        *inputs1, y1 = first
        h1, logits = self.embed(*inputs1)  # (B, D), (B, K)
        terms = {"ce": F.cross_entropy(logits, y1, label_smoothing=self.label_smoothing)}
        if self.regularizer is None:
            terms["loss"] = terms["ce"]
            return terms
        h2 = y2 = None
        if self.needs_second_batch:
            if second is None:
                raise ValueError(f"{type(self.regularizer).__name__} matches two mini-batches: pass S2 as well")
            *inputs2, y2 = second
            h2 = self.model.extractor(*inputs2)  # (B2, D)
        terms[self.term] = self.regularizer(h1, y1, h2, y2)
        terms["loss"] = terms["ce"] + self.lam * terms[self.term]
        return terms


def build_objective(config: "TrainConfig", model: Classifier, num_classes: int) -> Objective:
    """The config's method as an `Objective` around `model`."""
    spec = METHODS[config.method]
    regularizer = None if spec.regularizer is None else spec.regularizer(config, num_classes, model.feature_dim)
    smoothing = config.smoothing if "smoothing" in spec.fields else 0.0
    return Objective(model, regularizer, config.lam, smoothing, spec.term or "regularizer")
