"""What each training method is, in one table: `METHODS`.

Every method is `CE(C(E(x1)), y1) + lam * R(h1, y1, h2, y2)`: the cross-entropy of mini-batch S1
(with label smoothing for LSR) plus, for a method with a regulariser R, its weighted term; ITRA's R
matches the features of S1 against those of an independent S2 (Eq. (4) and (6)), which is never in
the CE (where S2 comes from, and what that costs: `itra.pairing`). `METHODS` says per method what
it reads from the config, how to build its R, and how tables and figures name and colour it (a new method is
one `register_method` call that gives all of these, see `tests/test_methods.py`); the trainer, the report, the
presets and the CLI read method facts from it and nowhere else. The step's forward passes are
`itra.objective.Objective`; how runs are labelled from these facts is `itra.experiments.labels`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from torch import nn

from itra.losses import CenterLoss, ITRALoss
from itra.errors import BadValue
from itra.mmd import Bandwidth
from itra.registries import check_new

# A regulariser is an nn.Module called as `R(h1, y1, h2=None, y2=None)` -> scalar, with a `needs_second_batch`
# attribute; its factory is called as `build(num_classes, feature_dim, **fields)`, with the config fields it reads.
RegularizerFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class Regularizer:
    """How a method builds its regulariser: `build(num_classes, feature_dim, **{field: value for field in reads})`,
    with the config fields it reads (among its method's `MethodSpec.fields`) by keyword; `objective.build_objective`
    takes them from the config."""

    build: RegularizerFactory
    reads: tuple[str, ...] = ()


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
    regularizer: Optional[Regularizer] = None


def _center(num_classes: int, feature_dim: int, center_alpha: float) -> nn.Module:
    return CenterLoss(num_classes, feature_dim, center_alpha, validate_args=False)


def _itra(conditional: bool) -> Regularizer:
    def build(num_classes: int, feature_dim: int, bandwidth: Bandwidth, match: str) -> nn.Module:
        return ITRALoss(conditional, bandwidth, num_classes, validate_args=False, squared=match == "mmd2")

    return Regularizer(build, ("bandwidth", "match"))


_ITRA_FIELDS = ("lam", "bandwidth", "match", "lam_warmup", "lam_warmup_ratio", "second_batch_size", "pairing",
                "s2_state", "match_at", "match_ranks")
METHODS: dict[str, MethodSpec] = {
    "ce": MethodSpec("CE", "tab:gray"),
    "lsr": MethodSpec("LSR", "tab:orange", "Oranges", ("smoothing",), "smoothing"),
    "center": MethodSpec("Center", "tab:green", "Greens", ("lam", "center_alpha"), "lam", "center",
                         regularizer=Regularizer(_center, ("center_alpha",))),
    "itra": MethodSpec("ITRA", "tab:purple", "Purples", _ITRA_FIELDS, "lam", "match", True, _itra(False)),
    "itra-c": MethodSpec("ITRA-c", "tab:blue", "Blues", _ITRA_FIELDS, "lam", "match", True, _itra(True)),
}
TRAINING_MODE_FIELDS = ("exits", "exit_weights")  # read by every method: they change what it trains (`itra.exits`)
REFERENCE = "ce"  # the method every other is compared with (step-time ratios, reference levels in studies)


def method_fields() -> set[str]:
    """Config fields that some method reads (those a run's method does not read are off: `itra.resolve`)."""
    return {name for spec in METHODS.values() for name in spec.fields}


# What to try when a run fails, by how it failed: (the config field a tip changes, the tip). A run is told only the tips
# whose field it reads (its method's fields, `MethodSpec.fields`, and `lr`, which every run reads): a CE run never
# hears of --lam. `--match mmd2` is no tip to a run that matches with it already.
REMEDIES = {
    "collapsed": (("lam", "a lower --lam"), ("lam_warmup", "a longer --lam-warmup (steps) or --lam-warmup-ratio"), ("match", "--match mmd2"),
                  ("lr", "a lower --lr")),
    "diverged": (("lr", "a lower --lr"), ("lam", "a lower --lam")),
}


def remedies(method: str, match: str | None, failure: str) -> str:
    """`try a lower --lr or --lam`: the `REMEDIES` of `failure` ("collapsed", "diverged") whose field `method` reads;
    `match` is the run's `--match` (None where its method reads none)."""
    reads = {*METHODS[method].fields, "lr"}
    tips = [tip for field, tip in REMEDIES[failure] if field in reads and not (field == "match" and match == "mmd2")]
    return "try " + (", ".join(tips[:-1]) + " or " if len(tips) > 1 else "") + tips[-1]


def register_method(name: str, spec: MethodSpec) -> None:
    """Add a method to `METHODS`: it can then be trained, swept and reported like the built-in ones."""
    from itra.config import TrainConfig

    check_new(METHODS, name, "A method")
    unknown = [field for field in (*spec.fields, spec.strength) if field is not None
               and field not in TrainConfig.__dataclass_fields__]
    if unknown:
        raise BadValue(f"Method {name!r} reads unknown config fields: {', '.join(unknown)}")
    undeclared = [field for field in (spec.regularizer.reads if spec.regularizer else ()) if field not in spec.fields]
    if undeclared:
        raise BadValue(f"Method {name!r}'s regulariser reads fields its `fields` do not name: {', '.join(undeclared)}")
    METHODS[name] = spec
