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
  global`, `--second-batch-size`), the model against the dataset (a text dataset needs a text model), the exits
  against the model (`itra.models.registry`).

The rules that need what only the run knows are here too, checked by `train.fit` when it has it: the batch against
the training set (`check_second_batch`), the processes against the run's (`check_world_size`). Beside them, the
machine's (`device.check_machine`: device, precision, compilers), the model's files (`runs.check_model_files`) and
a built model's exits (`objective.check_exits`, which a library user's `Objective` needs too; the width rule
it shares with `check_exits_of_model` is one function, `exits.check_exit_widths`).

What it returns is a `ResolvedConfig`, the one kind of config everything below (`train`, `objective`, the
experiments, a run directory) trusts; `train.fit` refuses any other, so no run trains an unresolved one.
A rule that code below also states for its own callers (a library user's `Objective`) is one function both call:
`pairing.check_match_at`, `checks.check_choice`. `ignored` names the fields a user set
that the run does not read, for the one-line note the CLI prints.
"""
from __future__ import annotations

import dataclasses

from itra.config import FIELD_ORDER, TrainConfig
from itra.data.registry import is_text_dataset
from itra.methods import METHODS, method_fields
from itra.exits import EXIT_MODES, check_exit_widths
from itra.mmd import parse_bandwidth
from itra.models.libraries import library_of
from itra.models.classifier import MODELS_WITH_EXITS
from itra.models.registry import IMAGE_MODELS, meta_model
from itra.optimizers import OPTIMIZER_FIELDS, check_optimizer
from itra.distributed import Dist
from itra.pairing import PAIRINGS, check_match_at, check_pairing, samples_per_step
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
    check_model_of_dataset(resolved)
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


def check_model_of_dataset(config: TrainConfig) -> None:
    """A text dataset needs a text model: not one of itra's image models, nor a timm or torchvision one."""
    if is_text_dataset(config.dataset) and (config.model in IMAGE_MODELS or library_of(config.model)):
        raise BadValue(f"{config.dataset} is a text dataset, but --model {config.model} is an image model; use "
                       "--model minilm (offline) or a Hugging Face encoder name or directory")


def check_exits_of_model(config: TrainConfig) -> None:
    """`--exits shared|separate` against one of itra's own image models, before any data loads
    (`exits.check_exit_widths` on the model without weights; a timm, torchvision or text model is checked once built,
    by `Objective`)."""
    if not EXIT_MODES[config.exits].every_exit or config.model not in IMAGE_MODELS or is_text_dataset(config.dataset):
        return
    try:
        check_exit_widths(meta_model(config.model), config.exits, f"--model {config.model}")
    except NotImplementedError:
        raise BadValue(f"--exits {config.exits}: --model {config.model} has no layer-wise exits; use a model with "
                       f"exits ({MODELS_WITH_EXITS}) or --exits last") from None


# Rules against what only the run knows, checked by `train.fit` once it has it: the size of the training set (after
# subsets and the validation split) and the processes it was launched on.

def check_second_batch(config: TrainConfig, train_size: int) -> None:
    """One step's samples (`--batch-size`, twice with `--pairing split`, on every process) must fit in the training set;
    and a method that matches S1 against an S2 of the same samples has nothing to match: refused. That is so when one
    (global) batch covers the whole training set and S2 is drawn from it too, or is the previous step's S1. Both are
    said in the flags the user typed, not in the samples they make."""
    spec = METHODS[config.method]
    per_sample = samples_per_step(config.pairing, 1) * config.world_size  # a step takes batch_size x this
    makes = [f"--pairing {config.pairing}"] * (per_sample // config.world_size > 1) + \
        [f"{config.world_size} processes"] * (config.world_size > 1)
    how = f" ({per_sample} x {config.batch_size} samples a step with {' and '.join(makes)})" if makes else ""
    if config.batch_size * per_sample > train_size:
        raise BadValue(f"--batch-size {config.batch_size}{how} is larger than the training set of {train_size} samples: "
                       f"use at most {train_size // per_sample}")
    if not spec.needs_second_batch or not PAIRINGS[config.pairing].whole_set:
        return
    if config.batch_size * config.world_size >= train_size:
        raise BadValue(f"--batch-size {config.batch_size}{how} covers the whole training set of {train_size} samples, "
                       f"so S2 holds the same samples as S1 and {spec.label}'s match is 0: use a batch smaller than the "
                       "training set (or --method ce)")


def check_world_size(config: TrainConfig, dist: Dist) -> None:
    """A run trains (and resumes) on the number of processes it was started with: its global batch depends on it."""
    if config.world_size == dist.world_size:
        return
    how = (f"launch it with torchrun --nproc-per-node {config.world_size} (nodes x processes per node = "
           f"{config.world_size})" if config.world_size > 1 else "run it without torchrun")
    raise BadValue(f"{config.name} trains on {config.world_size} process(es) (global batch {config.world_size} x "
                     f"{config.batch_size}), but this job has {dist.world_size}: {how}")
