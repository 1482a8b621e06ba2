"""Multi-exit training: which classifier reads each layer's representation, and how much each layer counts.

    itra train --dataset fashion-mnist --model vit --method ce --exits shared      # aligned training
    itra train --dataset fashion-mnist --model vit --method ce --exits separate    # a head per exit

A model with exits (`Classifier.exits`) has a representation h_l (B, D_l) after every layer l = 1..L,
h_L the features h. The `--exits` modes (Jiang, Zhou and Zhu, 2024, "aligned training"; the paper is not
available here, so the weights are configurable):

- `last` (default): CE(C(h_L), y), standard training; the other exits are only measured.
- `shared`: Σ_l w_l CE(C(h_l), y) with the one head C of the last layer over every exit, so that C
  classifies right after any layer. Needs D_l = D at every exit (the ViT, the text encoders).
- `separate`: Σ_l w_l CE(C_l(h_l), y) with a head of its own per exit, C_L = C (the standard multi-exit
  model); works with any widths (the ResNets' stages too). The heads are `Classifier.exit_heads`.

`--exit-weights`: `linear` w_l = 2l / (L(L+1)) (growing with depth, summing to 1: the paper's, as
summaries of it give it) or `uniform` w_l = 1/L. With ITRA (`--match-at every`) the matching term is
Σ_l w_l Match(h1_l, h2_l) with the same weights; by default (`last`) it is Match(h1_L, h2_L) alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from itra.checks import check_choice
from itra.errors import BadValue

if TYPE_CHECKING:
    from itra.models import Classifier


@dataclass(frozen=True)
class ExitMode:
    """One `--exits` mode: which exits the CE trains, and with which heads."""

    label: str  # as tables name it
    every_exit: bool  # the CE trains every exit (False: the last alone, standard training)
    own_heads: bool  # every exit a head of its own (False: the last layer's head reads every exit: D_l = D)


EXIT_MODES: dict[str, ExitMode] = {
    "last": ExitMode("standard", every_exit=False, own_heads=False),
    "shared": ExitMode("aligned (shared head)", every_exit=True, own_heads=False),
    "separate": ExitMode("separate heads", every_exit=True, own_heads=True),
}
EXIT_WEIGHTS = ("linear", "uniform")
MATCH_AT = ("last", "every")


def check_exit_widths(model: "Classifier", exits: str, label: str) -> None:
    """That `model` (`label` in the message: "--model resnet18") has the exits that `exits` (a mode of `EXIT_MODES`)
    reads: with `shared` or `separate`, exits at all (else `Classifier.exit_dims`' NotImplementedError), with `shared`
    every exit as wide as the head's input. The one statement of the rule: `itra.resolve` checks itra's own image
    models with it before any data loads (on a model without weights, `models.registry.meta_model`), `Objective` the
    model it is given.

    >>> from itra.models.registry import meta_model
    >>> check_exit_widths(meta_model("vit"), "shared", "--model vit")  # every block 64 wide, as the features
    >>> check_exit_widths(meta_model("resnet18"), "shared", "--model resnet18")
    Traceback (most recent call last):
    ...
    itra.errors.BadValue: --exits shared reads every exit with the last layer's head, which takes width 512, but the exits of --model resnet18 differ in width ([64, 128, 256, 512]): use --exits separate
    """
    mode = EXIT_MODES[exits]
    if not mode.every_exit:
        return
    widths = model.exit_dims
    if not mode.own_heads and any(width != model.feature_dim for width in widths):
        raise BadValue(f"--exits shared reads every exit with the last layer's head, which takes width "
                       f"{model.feature_dim}, but the exits of {label} differ in width ({widths}): use --exits separate")


def exit_weight_vector(count: int, kind: str = "linear") -> torch.Tensor:
    """The weights w_l of the L = `count` exits, l = 1..L, (L,) float32 summing to 1:
    `linear` w_l = 2l / (L(L+1)), `uniform` w_l = 1/L."""
    if count < 1:
        raise BadValue(f"Expected at least one exit, but got {count}")
    if kind == "linear":
        return torch.arange(1, count + 1, dtype=torch.float32) * (2.0 / (count * (count + 1)))
    check_choice("exit_weights", kind, EXIT_WEIGHTS)
    return torch.full((count,), 1.0 / count)  # "uniform"


def weighted_sum(values: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Σ_l w_l values_l of L scalars and L weights."""
    return (torch.stack(values) * weights.to(values[0].device, values[0].dtype)).sum()  # no matmul: autocast keeps float32


def matched_layers(layers: list[torch.Tensor], match_at: str) -> list[torch.Tensor]:
    """The representations the match reads of the trained ones (`layers`, first to last): every exit's with
    `match_at` "every", else the last's alone."""
    return layers if match_at == "every" else layers[-1:]


def match_term(values: list[torch.Tensor], weights: torch.Tensor, match_at: str) -> torch.Tensor:
    """The matching term of the `matched_layers`' values: Σ_l w_l Match_l with "every", else the last exit's Match."""
    return weighted_sum(values, weights) if match_at == "every" else values[0]
