"""The config in effect: a `TrainConfig` from flags or a `config.json`, resolved once, before any data loads.

`resolve` sets every field that nothing in the run reads to None, its off value (so `config.json` and the run
name say what the run computed), canonicalises aliases, and checks every rule between fields in one place:

- the method's fields (`METHODS[method].fields`): the others are off (`--method ce` reads no λ, pairing or bandwidth);
  `s2_state` with a pairing that draws no S2 (`previous`, `split`, `ranks`: no pass of S2's own);
- the λ warm-up (`itra.warmup`): `lam_warmup` given is a fixed ramp of that many steps and the ratio is off; unset,
  the ramp is `lam_warmup_ratio` of the run (a `config.json` written before the ratio has its `lam_warmup` steps);
- `exit_weights` and `match_at` with `--exits last` (one exit); `match_ranks` in one process (there are no other
  ranks); `max_length` on an image dataset; `momentum` with `--optimizer adamw`;
- the bandwidth, parsed into the one vocabulary of `itra.mmd` ("batch", "class", "multi" or a float > 0); an S2 size
  equal to `--batch-size` is no S2 size (the default);
- the pairing against its table entry (`itra.pairing.PAIRINGS`: processes, `--match-at every`, `--match-ranks
  global`, `--second-batch-size`), the exits against the model (`itra.models.registry`).

What it returns is a `ResolvedConfig`, the one kind of config everything below (`train`, `objective`, the
experiments, a run directory) trusts; `train.fit` resolves what it is given, so no run trains an unresolved one.
A rule that code below also states for its own callers (a library user's `Objective`) is one function both call:
`pairing.check_match_at`, `checks.check_choice`. `ignored` names the fields a user set
that the run does not read, for the one-line note the CLI prints.
"""
from __future__ import annotations

import dataclasses

from itra.config import FIELD_ORDER, TrainConfig
from itra.data.registry import is_text_dataset
from itra.methods import METHODS, method_fields
from itra.exits import EXIT_MODES
from itra.mmd import parse_bandwidth
from itra.models.registry import EQUAL_WIDTH_EXITS, IMAGE_MODELS, WITH_EXITS
from itra.optimizers import OPTIMIZER_FIELDS, check_optimizer
from itra.pairing import check_match_at, check_pairing
from itra.registries import entry
from itra.errors import BadValue


class ResolvedConfig(TrainConfig):
    """A `TrainConfig` in effect, which `resolve` alone makes: what `train.fit` trains, the run directory holds
    (`rundir.read_config` reads one back) and the experiments hand on. Its type says that the rules between fields
    have been checked and the fields nothing reads are off."""


def resolve(config: TrainConfig) -> ResolvedConfig:
    """`config` in effect (module docstring); a one-line `ValueError` for a rule it breaks. Idempotent."""
    values = {**config.to_dict(), **{name: None for name in off_fields(config)}}
    if values["bandwidth"] is not None:
        values["bandwidth"] = parse_bandwidth(values["bandwidth"])
    if values["second_batch_size"] == values["batch_size"]:
        values["second_batch_size"] = None
    resolved = ResolvedConfig(**values)
    check_pairing_rules(resolved)
    check_exits_of_model(resolved)
    return resolved


def ignored(config: TrainConfig) -> dict[str, str]:
    """The fields set away from their default that the run does not read, each with why: `{"lam": "--method ce"}`."""
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    return {name: why for name, why in off_fields(config).items()
            if getattr(config, name) not in (None, defaults[name])}


def off_fields(config: TrainConfig) -> dict[str, str]:
    """The fields the run does not read, each with what makes it so, in `FIELD_ORDER`; an unknown method is an error."""
    spec = entry(METHODS, "method", config.method)
    off = {name: f"--method {config.method}" for name in method_fields() - set(spec.fields)}
    if not EXIT_MODES[config.exits].every_exit:
        off.update({name: "--exits last" for name in ("exit_weights", "match_at") if name not in off})
    if "pairing" not in off and "s2_state" not in off and not check_pairing(config.pairing).draws_second_batch:
        off["s2_state"] = f"--pairing {config.pairing}"
    if "lam_warmup" not in off and config.lam_warmup is not None:
        off["lam_warmup_ratio"] = f"--lam-warmup {config.lam_warmup}"
    if config.world_size == 1 and "match_ranks" not in off:
        off["match_ranks"] = "one process"
    if not is_text_dataset(config.dataset):
        off["max_length"] = f"the image dataset {config.dataset}"
    optimizer = check_optimizer(config.optimizer)
    off.update({name: f"--optimizer {config.optimizer}" for name in OPTIMIZER_FIELDS if name not in optimizer.fields})
    return dict(sorted(off.items(), key=lambda item: FIELD_ORDER.index(item[0])))


def check_pairing_rules(config: TrainConfig) -> None:
    """The pairing's table entry against the processes, `--match-at`, `--match-ranks` and `--second-batch-size`."""
    if config.pairing is None:
        return
    spec = check_pairing(config.pairing)
    name = config.pairing
    if config.world_size < spec.min_processes:
        raise BadValue(f"Expected --pairing {name} under torchrun with {spec.min_processes} or more processes, but "
                         f"got {config.world_size} process(es)")
    check_match_at(name, config.match_at)
    if config.match_ranks == "global" and not spec.global_ranks:
        raise BadValue(f"Expected the default --match-ranks local with --pairing {name} (its S2 is "
                         f"{spec.second_batch} already), but got --match-ranks global")
    if config.second_batch_size is not None and not spec.draws_second_batch:
        raise BadValue(f"Expected no `second_batch_size` with pairing {name!r}, whose S2 is {spec.second_batch}, "
                         f"but got {config.second_batch_size}")


def check_exits_of_model(config: TrainConfig) -> None:
    """`--exits shared|separate` on one of itra's own image models that has the exits they need (a timm, torchvision
    or text model is checked once built: `objective.check_exits`)."""
    mode = EXIT_MODES[config.exits]
    if not mode.every_exit or config.model not in IMAGE_MODELS or is_text_dataset(config.dataset):
        return
    if config.model not in WITH_EXITS:
        raise BadValue(f"--exits {config.exits}: --model {config.model} has no layer-wise exits; use one that has "
                         f"({', '.join(WITH_EXITS)}, a text encoder, a timm model with forward_intermediates) or "
                         "--exits last")
    if not mode.own_heads and config.model not in EQUAL_WIDTH_EXITS:
        raise BadValue(f"--exits shared reads every exit with the last layer's head, but the exits of --model "
                         f"{config.model} differ in width: use --exits separate, or a model whose exits are as wide "
                         f"as its features ({', '.join(EQUAL_WIDTH_EXITS)}, the text encoders)")
