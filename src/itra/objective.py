"""The `Objective`: one training step's forward passes and loss terms, the only code that knows the model's anatomy
(extractor, head, exits).

    terms = Objective(model, ITRALoss(), lam=0.6, term="match")((x1, y1), (x2, y2))   # {"ce", "match", "loss"}

What each method is (its regulariser, the fields it reads) is `itra.methods.METHODS`, and `build_objective` builds the
objective of a resolved config from it; where S2 comes from is the pairing's table entry (`itra.pairing.PAIRINGS`),
which exits are trained and matched is `itra.exits`, matching against every rank's S2 is `itra.distributed`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn

from itra.data.batches import Batch
from itra.distributed import MATCH_RANKS, with_every_rank_s2
from itra.exits import EXIT_MODES, MATCH_AT, check_exit_widths, exit_weight_vector, match_term, matched_layers, weighted_sum
from itra.methods import METHODS
from itra.models import Classifier
from itra.pairing import (DEFAULT_PAIRING, DEFAULT_S2_STATE, PAIRINGS, S2_STATES, PreviousBatch, check_match_at,
                          check_pairing)
from itra.checks import check_choice
from itra.errors import BadValue

if TYPE_CHECKING:
    from itra.config import TrainConfig


class Objective(nn.Module):
    """The loss of one training step, and the only code that knows the model's anatomy.

    `forward(S1, S2)` returns the named terms: "ce", the regulariser's term (e.g. "match"), and
    "loss" = ce + lam * term. How a matching regulariser gets S2's features is `pairing`
    (`itra.pairing`): with "independent" (the paper) and "detached" S2 goes through the extractor in a
    pass of its own, so it touches neither the CE nor S1's batch-norm statistics, and what that pass may change
    of the model's state (running statistics, the dropout stream) is `s2_state`; "previous" matches
    against the last step's S1, "split" halves S1's batch and "ranks" (under torchrun) matches against the other
    ranks' S1; none of these takes an S2. Which exits the
    CE trains, with which heads and weights, and where the regulariser matches, is `exits`,
    `exit_weights` and `match_at` (`itra.exits`); "ce" is then the weighted sum over exits. `embed` gives
    the last exit's features and logits for evaluation. The regulariser's state (Center loss's centres) is
    part of this module's state; `previous`'s kept batch is `self.previous`.

    Under `DistributedDataParallel` this is the wrapped module (one forward per step does both passes).
    `match_ranks="global"` matches this rank's S1 against the S2 features and labels of all ranks,
    all-gathered with gradient (`itra.distributed.with_every_rank_s2`); "local" (and any single process)
    against this rank's own S2.
    """

    def __init__(self, model: Classifier, regularizer: nn.Module | None = None, lam: float = 0.0,
                 label_smoothing: float = 0.0, term: str = "regularizer", pairing: str = DEFAULT_PAIRING,
                 exits: str = "last", exit_weights: str = "linear", match_at: str = "last",
                 match_ranks: str = "local", s2_state: str = DEFAULT_S2_STATE) -> None:
        super().__init__()
        check_pairing(pairing)
        check_choice("s2_state", s2_state, S2_STATES)
        check_choice("match_ranks", match_ranks, MATCH_RANKS)
        if pairing != "independent" and not (regularizer is not None and regularizer.needs_second_batch):
            what = "no regulariser" if regularizer is None else type(regularizer).__name__
            raise BadValue(f"Expected pairing='independent' for an objective that matches no S2 ({what}), "
                             f"but got {pairing!r}")
        check_exits(model, exits, match_at, pairing, matches=regularizer is not None and regularizer.needs_second_batch)
        self.model = model
        self.regularizer = regularizer
        self.lam = lam
        self.label_smoothing = label_smoothing
        self.term = term
        self.pairing = pairing
        self.s2_state = s2_state
        self.exits = exits
        self.exit_mode = EXIT_MODES[exits]
        self.match_at = match_at
        # w_l of the exits the CE trains: (1,) = [1] for the last exit alone; not in the state dict (the config says it)
        self.register_buffer("exit_weights", exit_weight_vector(len(model.exit_dims) if self.exit_mode.every_exit else 1,
                                                                exit_weights), persistent=False)
        self.match_ranks = match_ranks
        self.previous = PreviousBatch()  # stays empty unless pairing == "previous"
        self.compiled_extractor: Callable[..., torch.Tensor] | None = None
        self.compiled_exits: Callable[..., list[torch.Tensor]] | None = None

    @property
    def needs_second_batch(self) -> bool:
        return self.regularizer is not None and bool(self.regularizer.needs_second_batch)

    @property
    def draws_second_batch(self) -> bool:
        """Whether `forward` takes an S2 from the loader (not for the "previous" and "split" pairings)."""
        return self.needs_second_batch and PAIRINGS[self.pairing].draws_second_batch

    def compile_extractor(self) -> None:
        """`torch.compile` the extractor of every pass (`forward`, `embed`), and its exits where they are trained;
        the model and its `state_dict` stay as they are, so checkpoints of compiled and eager runs are the same.
        Call it on the device."""
        model = self.model
        # Functions that call the module, not `extractor.compile()`: in torch 2.13 that compiles nothing for
        # a module whose forward is torch.nn's own (nn.Sequential), silently.
        self.compiled_extractor = torch.compile(lambda *inputs: model.extractor(*inputs))
        if self.exit_mode.every_exit:
            self.compiled_exits = torch.compile(lambda *inputs: model.exits(*inputs))

    def extract(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Features h (B, D) of one batch of inputs, through the compiled extractor once there is one."""
        return (self.compiled_extractor or self.model.extractor)(*inputs)

    def layers(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """The representations the CE trains: `[h]` with exits "last", else h_l (B, D_l) at every exit."""
        if not self.exit_mode.every_exit:
            return [self.extract(*inputs)]
        return (self.compiled_exits or self.model.exits)(*inputs)

    def second_pass(self) -> ContextManager[None]:
        """The context of S2's forward pass under `s2_state` (`itra.pairing.S2_STATES`)."""
        device = next(self.model.parameters()).device
        return S2_STATES[self.s2_state].forward(self.model, device)

    def embed(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features h (B, D) and logits (B, K) of one batch of inputs."""
        features = self.extract(*inputs)
        return features, self.model.head(features)

    def forward(self, first: Batch, second: Batch | None = None) -> dict[str, torch.Tensor]:
        """Loss terms of one step on S1 = `(*inputs, y1)` and, when the regulariser needs it, S2
        (with the "split" pairing, `first` holds both: 2m samples)."""
        *inputs1, y1 = first
        layers1 = self.layers(*inputs1)  # [(B, D_l)], the last one h1 (B, D)
        logits = self.model.exit_logits(layers1, separate=self.exit_mode.own_heads)  # [(B, K)]
        terms = {"ce": weighted_sum([F.cross_entropy(z, y1, label_smoothing=self.label_smoothing) for z in logits],
                                    self.exit_weights)}
        if self.regularizer is None:
            terms["loss"] = terms["ce"]
            return terms
        if self.needs_second_batch:
            pairs = self._pairs(matched_layers(layers1, self.match_at), y1, second)
            if pairs is not None and self.match_ranks == "global":  # S2 of every rank, S1 this rank's
                pairs = with_every_rank_s2(pairs)
            # A step without S2 (`previous`'s first, `split`'s one-sample batch) has no match: a zero term.
            if pairs is None:
                terms[self.term] = layers1[-1].new_zeros((), dtype=torch.float32)
            else:
                terms[self.term] = match_term([self.regularizer(*pair) for pair in pairs], self.exit_weights,
                                              self.match_at)
        else:
            terms[self.term] = self.regularizer(layers1[-1], y1, None, None)
        terms["loss"] = terms["ce"] + self.lam * terms[self.term]
        return terms

    def _pairs(self, layers1: list[torch.Tensor], y1: torch.Tensor, second: Batch | None
               ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] | None:
        """`(h1, y1, h2, y2)` of every matched exit (`layers1`: the last, or all) under `self.pairing`'s table entry
        (`itra.pairing.PAIRINGS`), or None when this step has no S2."""
        spec = PAIRINGS[self.pairing]
        if not spec.draws_second_batch:
            return spec.pairs(self, layers1, y1, second)
        if second is None:
            raise BadValue(f"{type(self.regularizer).__name__} matches two mini-batches: pass S2 as well")
        with self.second_pass():  # S2's own pass, which changes of the model's state what `s2_state` lets it
            return spec.pairs(self, layers1, y1, second)


def check_exits(model: Classifier, exits: str, match_at: str, pairing: str, matches: bool) -> None:
    """That `model` has what the exit modes ask of it (`itra.exits`): exits at all, heads of its own per exit for
    "separate", every exit as wide as the head's input for "shared"; and that "every" has exits and S2 to match."""
    check_choice("exits", exits, EXIT_MODES)
    check_choice("match_at", match_at, MATCH_AT)
    mode = EXIT_MODES[exits]
    if match_at == "every" and (not mode.every_exit or not matches):
        raise BadValue("Expected match_at='every' with exits 'shared' or 'separate' and a regulariser that matches "
                       f"S2, but got exits {exits!r} and {'a' if matches else 'no'} regulariser that matches S2")
    check_match_at(pairing, match_at)
    if not mode.every_exit:
        return
    check_exit_widths(model, exits, f"this {type(model.extractor).__name__}")  # NotImplementedError without exits
    widths = model.exit_dims
    if mode.own_heads and len(model.exit_heads) != len(widths) - 1:
        raise BadValue(f"--exits separate needs a head per exit: call model.add_exit_heads() first "
                         f"(this model has {len(model.exit_heads)} for {len(widths)} exits)")


def build_objective(config: "TrainConfig", model: Classifier, num_classes: int) -> Objective:
    """The method of a resolved config (`itra.resolve`) as an `Objective` around `model`, its regulariser built from
    the config fields it reads (`methods.Regularizer`); a field not in effect (None) is the objective's neutral value
    (no λ, no smoothing, one exit, the default pairing)."""
    spec = METHODS[config.method]
    regularizer = None if spec.regularizer is None else spec.regularizer.build(
        num_classes, model.feature_dim, **{name: getattr(config, name) for name in spec.regularizer.reads})
    in_effect = {"lam": config.lam, "label_smoothing": config.smoothing, "term": spec.term, "pairing": config.pairing,
                 "s2_state": config.s2_state,
                 "exit_weights": config.exit_weights, "match_at": config.match_at, "match_ranks": config.match_ranks}
    return Objective(model, regularizer, exits=config.exits,
                     **{name: value for name, value in in_effect.items() if value is not None})
