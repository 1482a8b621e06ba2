"""`TrainConfig`: everything that defines a run, each field's own range check, and the run's name.

The CLI maps every field to a flag one to one (`batch_size` -> `--batch-size`). A config is made the config *in
effect* by `itra.resolve.resolve` (fields nothing reads set to None, their off value; aliases canonicalised; the
rules between fields), and a run directory's `config.json` is that. The run name holds every field in effect that
differs from its default (see `TrainConfig.name`), so two different configs never share a directory and a sweep
over any field gives one run per value; only the location fields (where a run happens and what it logs, not
what it computes) are left out. This module is a leaf: it knows no method, pairing or dataset.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from itra.distributed import MATCH_RANKS
from itra.exits import EXIT_MODES, EXIT_WEIGHTS, MATCH_AT
from itra.checks import check_choice, check_count, check_seed
from itra.pairing import DEFAULT_S2_STATE, S2_STATES
from itra.warmup import DEFAULT_RATIO
from itra.errors import BadValue

MATCHES = ("mmd", "mmd2")
PRECISIONS = ("32", "bf16", "fp16")
# Set by how the job was launched (torchrun's WORLD_SIZE), not by a flag; it changes the computation (the global
# batch), so it is in the run name when not 1.
LAUNCH_FIELDS = ("world_size",)
# Where and how fast a run happens and what it logs, not what it computes: left out of the run name and
# of the check that a run directory holds the same run (a run started on the CPU may be resumed on a GPU,
# with its data moved, with TensorBoard logging switched on, or compiled). Like a change of device,
# compiling changes the rounding (fused kernels), not the method.
LOCATION_FIELDS = ("device", "data_dir", "tensorboard", "compile", "deterministic", "workers")
# The run name: its parts in this order, each `(field, tag)`: the tag names the field's value (`lam0.6`, `bs128`); ""
# lets the value stand alone (`itra-c`, `adamw`). The order is a file format (every run directory's name follows it),
# independent of the order of `TrainConfig`'s fields, which are grouped for reading (`GROUPS`): a new field gets its
# place here. The location fields are never named.
RUN_NAME = (
    ("dataset", ""), ("model", ""), ("pretrained", "pretrained"),
    ("method", ""), ("lam", "lam"), ("smoothing", "eps"), ("center_alpha", "alpha"),
    ("bandwidth", "bw"), ("match", ""), ("lam_warmup", "warm"), ("lam_warmup_ratio", "warmr"), ("pairing", ""),
    ("s2_state", "s2"),
    ("exits", "exits"), ("exit_weights", "w"), ("match_at", "at"), ("match_ranks", "ranks"),
    ("batch_size", "bs"), ("second_batch_size", "bs2"), ("world_size", "ws"), ("epochs", "e"),
    ("train_subset", "n"), ("test_subset", "test"), ("val_split", "val"), ("label_noise", "noise"),
    ("optimizer", ""), ("lr", "lr"), ("momentum", "mom"), ("weight_decay", "wd"),
    ("max_length", "len"), ("compactness_every", "probe"), ("precision", ""), ("seed", "seed"),
)
# Every field in one order, whatever the dataclass's: the run name's, then the location fields. Listings of fields
# (a sweep's grid, notes on ignored flags, messages) follow it, so they do not change when a field moves.
FIELD_ORDER = (*(name for name, _ in RUN_NAME), *LOCATION_FIELDS)
# `TrainConfig`'s fields by concern, in the dataclass's order, which `itra train --help` shows as its groups:
# (title, what the group decides, its fields).
GROUPS = (
    ("data", "which samples a run trains and is tested on",
     ("dataset", "train_subset", "test_subset", "val_split", "label_noise", "max_length")),
    ("model", "what is trained", ("model", "pretrained")),
    ("method", "the training method and how strongly it acts", ("method", "lam", "smoothing", "center_alpha")),
    ("matching", "ITRA's match: its kernel, the ramp of lambda, where S2 comes from",
     ("bandwidth", "match", "lam_warmup", "lam_warmup_ratio", "pairing", "second_batch_size", "s2_state",
      "match_ranks")),
    ("exits", "which exits the CE trains and the match reads (itra.exits)", ("exits", "exit_weights", "match_at")),
    ("optimisation", "the optimiser, the batches and the budget",
     ("optimizer", "lr", "momentum", "weight_decay", "batch_size", "epochs", "precision", "world_size")),
    ("reproducibility", "the seed of everything random, and the probes drawn from it", ("seed", "compactness_every")),
    ("location", "where and how fast a run happens and what it logs, not what it computes: never in the run name",
     LOCATION_FIELDS),
)
# In every run name where in effect, default or not: what the run is, and a method's strength (λ, ε: how strongly
# it acts). The warm-up ratio too: a run under it is never named as a run of an older itra, whose ramp was --lam-warmup's default of 300 steps (`WRITTEN_BEFORE`, `NAMED_AGAINST`).
ALWAYS_NAMED = ("dataset", "model", "method", "lam", "smoothing", "lam_warmup_ratio", "batch_size", "epochs", "seed")
# Fields added after run format 2 with the value a `config.json` written before them trained with, which `from_dict`
# gives a file that lacks one (the field's default would make it another run).
WRITTEN_BEFORE = {"lam_warmup_ratio": None, "s2_state": "update"}
# Fields named against another value than their default: --lam-warmup's default before --lam-warmup-ratio, 300 steps,
# so a run with a 300-step ramp (an older run, or one given --lam-warmup 300) keeps the name it always had.
# Likewise S2's pass: "update" until 0.4, so a run of it keeps its name and one of "keep" is named `s2keep`.
NAMED_AGAINST = {"lam_warmup": 300, "s2_state": "update"}
# The integer fields: each an int in [minimum, 2**63) (`checks.check_count`), with what to do when it is too small.
COUNTS = (("epochs", 1, ""), ("batch_size", 1, ""), ("second_batch_size", 1, ""), ("world_size", 1, ""),
          ("train_subset", 1, " (leave it unset for the whole set)"), ("test_subset", 1, " (leave it unset for the whole set)"),
          ("val_split", 0, " (0: no validation set)"), ("lam_warmup", 0, " (0: no ramp)"),
          ("max_length", 2, " (a text needs its special tokens)"), ("compactness_every", 0, " (0: never)"),
          ("workers", 0, " (0: load batches in the training process)"))


def option(default: Any, help: str) -> Any:
    """A config field with its command-line help (its place in run names is `RUN_NAME`'s, its `--help` group
    `GROUPS`')."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that defines a run; `config.json` in the run directory is this, resolved."""

    # data
    dataset: str = option("fashion-mnist", "dataset: fashion-mnist, fashion-mnist-pairs (its classes merged in pairs: 5 two-mode labels), digits, kmnist, cifar10, cifar100, stl10, imagenet; "
                          "text: wordnet, ag-news, amazon-full, yahoo, yelp-full")
    train_subset: Optional[int] = option(None, "train on a fixed random subset of this size")
    test_subset: Optional[int] = option(None, "evaluate on a fixed random subset of this size")
    val_split: int = option(0, "hold out this many training samples (chosen by the seed, stratified by label, never "
                            "trained on; --train-subset is drawn from the rest) as a validation set: each epoch also "
                            "logs val_* metrics and the test metrics after temperature scaling fitted on it, and the "
                            "summary the epoch of lowest validation CE (early stopping)")
    label_noise: float = option(0.0, "fraction of training labels flipped to another class (fixed by the seed)")
    max_length: Optional[int] = option(128, "text: tokens per sample, longer texts are truncated")

    # model
    model: str = option("cnn", "images: cnn, resnet18, resnet50, resnet101, vgg13, mobilenetv2, vit, or timm:<name>, "
                        "torchvision:<name> from scratch (pip install 'itra[timm]'; classes and channels, and a timm "
                        "ViT's img_size, come from the dataset); text: minilm (offline), "
                        "a Hugging Face encoder name (bert-base-uncased, ...) or its local directory")
    pretrained: bool = option(False, "with --model timm:<name> or torchvision:<name>: start from the library's default "
                              "pretrained weights, which must be on disk already (nothing is downloaded); a new head for "
                              "the dataset's classes")

    # method
    method: str = option("itra-c", "training method: ce, lsr, center, itra, itra-c, or one added with "
                         "itra.methods.register_method")
    lam: Optional[float] = option(0.6, "weight lambda of the method's extra term (center, itra, itra-c)")
    smoothing: Optional[float] = option(0.1, "label smoothing epsilon (lsr)")
    center_alpha: Optional[float] = option(0.5, "centre update rate alpha (center)")

    # matching
    bandwidth: Union[str, float, None] = option("batch", 'ITRA kernel bandwidth: "batch" (median of the pooled batch; default), "class" '
                            '(median per class: the paper as we read it), "multi" (kernels at 1/4..4 x the batch median, '
                            'averaged) or a number')
    match: Optional[str] = option("mmd", "ITRA matching estimator: mmd (the paper) or mmd2 (its square)")
    lam_warmup: Optional[int] = option(None, "itra, itra-c: ramp lambda linearly from 0 over the first this many steps (0: no "
                             "ramp, the paper); unset: over --lam-warmup-ratio of the run's steps")
    lam_warmup_ratio: Optional[float] = option(DEFAULT_RATIO, "itra, itra-c without --lam-warmup: ramp lambda linearly from 0 "
                                               "over this fraction of the run's steps (itra.warmup)")
    pairing: Optional[str] = option("independent", "itra, itra-c: where S2 comes from: independent (drawn apart, its own forward "
                          "and backward pass: the paper), detached (drawn apart, forward without gradient), previous "
                          "(the previous step's S1 features: no extra pass), split (one batch of 2 x --batch-size "
                          "cut in halves, CE on both; an epoch has half the steps), ranks (under torchrun: the other "
                          "ranks' S1, all-gathered)")
    second_batch_size: Optional[int] = option(None, "size of mini-batch S2 (itra, itra-c); default: batch size")
    s2_state: Optional[str] = option(DEFAULT_S2_STATE, "itra, itra-c with --pairing independent or detached: what S2's "
                                     "forward pass may change besides the match: keep (S2 is normalised by its own batch "
                                     "statistics and gets its own draws, but leaves the model's buffers and the run's random "
                                     "streams as they were: --lam 0 is --method ce bit for bit) or update (it updates the "
                                     "batch-norm running statistics and draws dropout masks and augmentations from the run's "
                                     "streams, shifting S1's later ones, as itra did before 0.4)")
    match_ranks: Optional[str] = option("local", "itra, itra-c under torchrun: match each rank's S1 against its own S2 (local) or "
                              "against the S2 of all ranks, all-gathered with gradient (global)")

    # exits
    exits: str = option("last", "which exits the CE trains (models with exits: vit, resnets, text encoders, timm models with "
                        "forward_intermediates): last "
                        "(standard training), shared (the last layer's head after every layer: aligned training), "
                        "separate (a head of its own per exit: the multi-exit baseline)")
    exit_weights: Optional[str] = option("linear", "with --exits shared or separate, the weight of exit l of L: linear "
                               "(2l / (L(L+1))) or uniform (1/L)")
    match_at: Optional[str] = option("last", "itra, itra-c with --exits shared or separate: match the last exit's features "
                           "(last) or every exit's, with the exit weights (every)")

    # optimisation
    optimizer: str = option("sgd", "sgd (Nesterov momentum) or adamw (the usual choice to fine-tune a text encoder)")
    lr: float = option(0.05, "initial learning rate (cosine schedule per step)")
    momentum: Optional[float] = option(0.9, "SGD momentum")
    weight_decay: float = option(5e-4, "weight decay")
    batch_size: int = option(128, "size of mini-batch S1")
    epochs: int = option(15, "training epochs")
    precision: str = option("32", "32 (float32), bf16 (autocast to bfloat16; CPU or GPU) or fp16 (autocast to "
                            "float16 with loss scaling; CUDA only)")
    world_size: int = option(1, "processes that train the run together (torchrun's WORLD_SIZE; set by the launch, "
                             "not a flag): the global batch is world_size x batch_size")

    # reproducibility
    seed: int = option(0, "seed of everything random in the run: initial weights, batches, augmentation, label noise, probes")
    compactness_every: int = option(50, "log compactness every this many steps (0: never)")

    # location
    device: str = option("auto", "auto, cpu, cuda, cuda:1, ...")
    data_dir: Optional[str] = option(None, "dataset directory; default: the dataset's standard location")
    tensorboard: bool = option(False, "also write each epoch's metrics and loss terms to TensorBoard event files in "
                               "the run directory (pip install tensorboard)")
    compile: bool = option(False, "torch.compile the feature extractor (needs a C++ compiler on the CPU, Triton on "
                           "CUDA): faster steps, the same computation up to rounding, so the run name is unchanged")
    deterministic: bool = option(False, "deterministic kernels (cuDNN deterministic, torch.use_deterministic_algorithms "
                                 "with CUBLAS_WORKSPACE_CONFIG, exact replacements of the adaptive pools): a CUDA run "
                                 "is then the same every time; the CPU is deterministic without it")
    workers: int = option(0, "data-loading worker processes (images read from files are decoded in them); the "
                          "batches are the same for any number")

    def __post_init__(self) -> None:
        """Each field's own range (None: not in effect, `itra.resolve`); the rules between fields are `resolve`'s."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise BadValue(f"Expected `{field.name}` to be a finite number, but got {value}")
        for name, minimum, hint in COUNTS:
            value = getattr(self, name)
            if value is not None:
                check_count(name, value, minimum, hint)
        check_seed("seed", self.seed)
        if self.data_dir == "":  # an unset shell variable: not the current folder
            raise BadValue("Expected `data_dir` to be a folder, but got an empty string (leave it unset for the "
                           "dataset's standard location)")
        ranges = (("lam", lambda v: v >= 0, ">= 0"), ("smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
                  ("center_alpha", lambda v: 0 <= v <= 1, "in [0, 1]"), ("label_noise", lambda v: 0 <= v <= 1, "in [0, 1]"),
                  ("lr", lambda v: v > 0, "> 0"),
                  ("lam_warmup_ratio", lambda v: 0 < v <= 1, "in (0, 1] (--lam-warmup 0: no ramp)"),
                  # momentum 1 never forgets a gradient: the velocity grows without bound
                  ("momentum", lambda v: 0 <= v < 1, "in [0, 1)"), ("weight_decay", lambda v: v >= 0, ">= 0"))
        for name, within, expected in ranges:
            value = getattr(self, name)
            if value is not None and not within(value):
                raise BadValue(f"Expected `{name}` {expected}, but got {value}")
        for name, allowed in (("match", MATCHES), ("precision", PRECISIONS),
                              ("exits", EXIT_MODES), ("exit_weights", EXIT_WEIGHTS), ("match_at", MATCH_AT),
                              ("match_ranks", MATCH_RANKS), ("s2_state", S2_STATES)):
            if getattr(self, name) is not None:
                check_choice(name, getattr(self, name), allowed)

    @property
    def group(self) -> str:
        """The run's name without its seed: the runs of one group differ only by seed."""
        return self.name.rsplit("-seed", 1)[0]

    @property
    def name(self) -> str:
        """The run directory's name, of a resolved config (`itra.resolve.resolve`): dataset, model, method, its
        strength (λ, ε), its warm-up ratio, batch size, epochs and seed whenever in effect, and every other field in
        effect (not None) that differs from its default (`NAMED_AGAINST`: from that value) as its tag and value
        (`lam0.6`, `lr0.01`, `bwclass`, `adamw`), in `RUN_NAME`'s order, e.g.
        `fashion-mnist-cnn-itra-c-lam0.6-warmr0.1-s2keep-bs128-e10-seed0`. Location fields (device, data_dir,
        tensorboard, compile, ...) are left out; a local model directory is named by its last part, a library model
        without its colon (`timm:resnet18` as `timm-resnet18`)."""
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        parts = []
        for name, tag in RUN_NAME:
            value = getattr(self, name)
            if value is None:
                continue  # not in effect, or unset (a subset, S2's size)
            if name in ALWAYS_NAMED or value != NAMED_AGAINST.get(name, defaults[name]):
                parts.append(tag + (Path(value).name.replace(":", "-") if name == "model" else
                                    "" if value is True else _short(value)))
        return "-".join(parts)

    def same_run(self, other: "TrainConfig") -> bool:
        """Whether `other` computes the same run (location fields aside)."""
        return not self.differences(other)

    def differences(self, other: "TrainConfig") -> list[str]:
        """The fields (location fields aside) where `other` differs: `["bandwidth 'class' / 'batch'", ...]`."""
        return [f"{name} {getattr(self, name)!r} / {getattr(other, name)!r}" for name in FIELD_ORDER
                if name not in LOCATION_FIELDS and getattr(self, name) != getattr(other, name)]

    def to_dict(self) -> dict[str, Any]:
        """The fields and their values in `FIELD_ORDER`: how files write a config (`config.json`, a run's identity),
        in the same order whatever the dataclass's."""
        return {name: getattr(self, name) for name in FIELD_ORDER}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """The config of a `config.json`'s values; a field it lacks has its default, or the value a file written
        before the field existed trained with (`WRITTEN_BEFORE`)."""
        values = {**WRITTEN_BEFORE, **values}
        unknown = set(values) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise BadValue(f"Unknown config keys: {', '.join(sorted(unknown))}")
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            allowed = [kind for kind in typing.get_args(hints[name]) or (hints[name],)]
            accepted = tuple(float if kind is float else kind for kind in allowed)  # JSON writes 1.0 as 1.0, 1 as 1
            if float in accepted:
                accepted += (int,)
            if not isinstance(value, accepted) or (isinstance(value, bool) and bool not in allowed):
                names = " or ".join("null" if kind is type(None) else kind.__name__ for kind in allowed)
                raise BadValue(f"Expected `{name}` to be {names}, but got {value!r}")
        return cls(**values)


def _short(value: Any) -> str:
    """A value as it reads in a run name: `0.6`, `5e-05`, `128`; always enough digits to tell two floats apart."""
    if isinstance(value, float):
        short = f"{value:g}".replace("e+", "e")
        return short if float(short) == value else repr(value)
    return str(value)


