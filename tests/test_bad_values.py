"""Bad input by class (STYLE 13): generators of instances, not one test per reported example.

(a) every numeric flag of every command (read from `build_parser`, so a new flag is covered as it is added) x
    (0, negative, NaN, inf, huge): exit 2 and one line naming the flag before any data loads, or, where the value
    is valid (`VALID`), the command goes on to load its data; every path argument of every command x the empty
    string, and every location field of `itra sweep` x two values: exit 2, one line naming it, nothing written;
(b) every public function x wrong types, out-of-range or bool labels, empty and non-finite tensors, non-bool flags:
    `BadValue` naming the argument; every size argument x sizes no machine can allocate: computed without them,
    or one line naming it;
(c) `split_classifier` over a grid of model shapes (post-head transforms, misleading names): a split whose logits
    are the model's own, or a one-line refusal.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import typing
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from itra.cli import build_parser, main
from itra.config import TrainConfig
from itra.errors import BadValue

# ---------------------------------------------------------------- (a) numeric flags x bad values

COMMAND_ARGS = {"train": [], "sweep": [], "report": ["runs"], "similarity": ["runs/x"], "reproduce": ["digits"],
                "ood": ["runs"]}
INT_VALUES = {"zero": "0", "negative": "-1", "nan": "nan", "inf": "inf", "huge": "99999999999999999999"}
FLOAT_VALUES = {**INT_VALUES, "huge": "1e30"}
# The values that are valid: each flag's documented range (`TrainConfig`'s field checks, `checks.check_count`).
# A huge --lr or --lam is a run that diverges and ends as failed (`DivergenceGuard`), not bad input.
ZERO_ALLOWED = {"lam", "smoothing", "center-alpha", "label-noise", "momentum", "weight-decay", "val-split",
                "lam-warmup", "compactness-every", "workers", "seed"}
HUGE_ALLOWED = {"lam", "lr", "weight-decay", "bandwidth"}
VALID = {("zero", flag) for flag in ZERO_ALLOWED} | {("huge", flag) for flag in HUGE_ALLOWED}


class Loaded(Exception):
    """Raised where a command would load its data (or read its runs): the checks are behind it."""


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command's parser, by name."""
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


def numeric_flags() -> list[tuple[str, str, bool]]:
    """(command, flag, is_int) for every flag of every command that takes a number."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {"--" + f.name.replace("_", "-"): hints[f.name] for f in dataclasses.fields(TrainConfig)}
    found = []
    for command, parser in commands().items():
        for action in parser._actions:
            flag = next((s for s in action.option_strings if s.startswith("--")), None)
            if flag is None or action.nargs == 0:
                continue
            kinds = set(typing.get_args(fields[flag]) or (fields[flag],)) if flag in fields else {action.type}
            kinds |= {int} if getattr(action.type, "__name__", "") in ("_positive_int", "comma-separated int") else set()
            if kinds & {int, float}:
                found.append((command, flag, float not in kinds))
    return found


FLAGS = numeric_flags()
CLI_CASES = [(command, flag, kind, (INT_VALUES if is_int else FLOAT_VALUES)[kind])
             for command, flag, is_int in FLAGS for kind in INT_VALUES]


def test_the_flags_are_read_from_the_parser():
    commands = {command for command, _, _ in FLAGS}
    assert commands == set(COMMAND_ARGS)
    for expected in [("train", "--seed"), ("train", "--lr"), ("sweep", "--seeds"), ("sweep", "--lam"),
                     ("similarity", "--test-subset"), ("reproduce", "--epochs"), ("report", "--tsne-points"),
                     ("train", "--bandwidth"), ("train", "--workers")]:
        assert expected in {(c, f) for c, f, _ in FLAGS}


@pytest.fixture
def no_data(monkeypatch):
    """Every way a command reaches its data raises `Loaded`."""
    import importlib
    import pkgutil

    import itra.experiments
    import itra.experiments.report as report
    import itra.experiments.runs as runs
    from itra import rundir

    # The commands import their modules on first use; imported under the patches below, a module that imports a
    # patched name (`from itra.experiments.runs import load_splits`) would keep the patch for the rest of the session.
    for module in pkgutil.iter_modules(itra.experiments.__path__):
        importlib.import_module(f"itra.experiments.{module.name}")

    def loaded(*args, **kwargs):
        raise Loaded

    monkeypatch.setattr(runs, "load_splits", loaded)
    monkeypatch.setattr(report, "build_report", loaded)
    monkeypatch.setattr(rundir, "read_config", loaded)


@pytest.mark.parametrize("command, flag, kind, value", CLI_CASES, ids=[f"{c}{f}={k}" for c, f, k, _ in CLI_CASES])
def test_every_numeric_flag_refuses_bad_values_before_any_data_loads(tmp_path, capsys, no_data, command, flag, kind,
                                                                     value):
    argv = [command, *COMMAND_ARGS[command], flag, value, "--out", str(tmp_path / "out")]
    if (kind, flag[2:]) in VALID:
        with pytest.raises(Loaded):  # a valid value: the command goes on to its data
            main(argv)
        return
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own error: the usage line, then one line naming the flag
        code = stop.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"itra {command}: error: ")
    assert flag in last or f"`{flag[2:].replace('-', '_')}`" in last, last
    assert not (tmp_path / "out").exists()


def least_value(flag: str, is_int: bool) -> str:
    """The least value a numeric flag accepts: 0 where zero is in its range, else 1 or the smallest positive float
    (1e-300: valid for every float flag whose range starts above 0)."""
    return "0" if flag[2:] in ZERO_ALLOWED else "1" if is_int else "1e-300"


# Each command on the least work that reaches every flag: digits, one epoch of 2 steps, one seed
DIGITS = ["--dataset", "digits", "--epochs", "1", "--train-subset", "64", "--batch-size", "32", "--test-subset", "32",
          "--device", "cpu"]
LEAST_WORK = {"train": DIGITS, "sweep": [*DIGITS, "--seeds", "1"], "report": ["{ce}", "--timing-steps", "1"],
              "similarity": ["{vit}"], "ood": ["{ce}"],
              "reproduce": ["digits", "--smoke", "--seeds", "1", "--epochs", "1", "--timing-steps", "1"]}
QUIET = {"train", "sweep", "reproduce"}  # the commands with progress bars to silence


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """A CE run on digits (read by report and ood) and a ViT run (similarity measures models with exits)."""
    root = tmp_path_factory.mktemp("least")
    for model, name in (("cnn", "ce"), ("vit", "vit")):
        assert main(["train", *DIGITS, "--model", model, "--method", "ce", "--out", str(root / name), "--quiet"]) == 0
    return {"ce": str(root / "ce"), "vit": str(next((root / "vit").iterdir()))}


@pytest.mark.parametrize("command, flag, is_int", FLAGS, ids=[f"{c}{f}" for c, f, _ in FLAGS])
def test_every_numeric_flag_at_its_least_valid_value_ends_or_is_one_line(tmp_path, capsys, finished_runs, command,
                                                                          flag, is_int):
    """A value at the edge of a flag's range is valid input: the command ends (0) or refuses in one line (2) where
    the value does not fit the data (a subset smaller than a batch), never a traceback (--tsne-points 1 ended in
    sklearn's) or runs that fail (--bandwidth 1e-300 diverged)."""
    argv = [command, *(a.format(**finished_runs) for a in LEAST_WORK[command]), flag, least_value(flag, is_int),
            "--out", str(tmp_path / "out"), *(["--quiet"] if command in QUIET else [])]
    code = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if "note:" not in line]
    assert code == 0 or (code == 2 and len(err) == 1 and err[0].startswith(f"itra {command}: error: ")), (code, err)


def path_arguments() -> list[tuple[str, str]]:
    """(command, flag or positional's metavar) for every argument of every command that names a file or folder."""
    from itra.cli import _path

    return [(command, next(iter(action.option_strings), action.metavar)) for command, parser in commands().items()
            for action in parser._actions if action.type is _path or action.dest == "data_dir"]


PATHS = path_arguments()


def test_the_path_arguments_are_read_from_the_parser():
    assert {("train", "--out"), ("train", "--resume"), ("train", "--data-dir"), ("sweep", "--data-dir"),
            ("report", "RUN_DIRS"), ("similarity", "RUN_DIR"), ("ood", "--out"), ("reproduce", "--data-dir")} <= set(PATHS)
    assert {command for command, _ in PATHS} == set(COMMAND_ARGS)


@pytest.mark.parametrize("command, argument", PATHS, ids=[f"{c}-{a}" for c, a in PATHS])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, capsys, monkeypatch, no_data, command,
                                                                 argument):
    """`--out "$OUT"` with OUT unset: one line naming the argument, and nothing written (here or in the current
    folder)."""
    monkeypatch.chdir(tmp_path)
    positional = not argument.startswith("--")
    argv = [command, *([""] if positional else [*COMMAND_ARGS[command], argument, ""]), "--out",
            str(tmp_path / "out")] if argument != "--out" else [command, *COMMAND_ARGS[command], "--out", ""]
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"itra {command}: error: "), last
    assert argument in last or f"`{argument[2:].replace('-', '_')}`" in last, last
    assert not any(tmp_path.iterdir())


def _sweep_location_flags() -> list[tuple[str, str]]:
    """(flag, two values) for every location field that `itra sweep` takes as a list (a switch has one value)."""
    from itra.cli import _flag_type
    from itra.config import LOCATION_FIELDS

    hints = typing.get_type_hints(TrainConfig)
    kinds = {name: _flag_type(hints[name]) for name in LOCATION_FIELDS}
    return [("--" + name.replace("_", "-"), {int: "0,1", str: "auto,cpu"}[kind]) for name, kind in kinds.items()
            if kind is not bool]


@pytest.mark.parametrize("flag, values", _sweep_location_flags())
def test_a_sweep_over_a_location_field_is_refused_not_trained_once(tmp_path, capsys, no_data, flag, values):
    """Runs that differ only where they run have one name: a grid over such a field trained its first value alone."""
    assert main(["sweep", flag, values, "--out", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"itra sweep: error: {flag} {values}: ") and "give one value" in line
    assert not any(tmp_path.iterdir())


MACHINE_DAMAGES = {"unknown device": ["--device", "nosuch"], "absent GPU": ["--device", "cuda:99"],
                   "fp16 on the CPU": ["--device", "cpu", "--precision", "fp16"],
                   "missing text model": ["--dataset", "wordnet", "--model", "/nonexistent/encoder"]}
STUDY_COMMANDS = {"train": ["train", "--dataset", "digits"], "sweep": ["sweep", "--dataset", "digits", "--seeds", "2"],
                  "reproduce": ["reproduce", "digits", "--smoke", "--jobs", "2"]}


# reproduce takes no --precision, and its preset names the dataset: its text model is given to the wordnet preset
MACHINE_CASES = [(command, damage) for command in STUDY_COMMANDS for damage in MACHINE_DAMAGES
                 if (command, damage) != ("reproduce", "fp16 on the CPU")]


@pytest.mark.parametrize("command, damage", MACHINE_CASES, ids=[f"{c}-{d}" for c, d in MACHINE_CASES])
def test_what_the_machine_lacks_is_one_line_before_any_run_starts(tmp_path, capsys, no_data, command, damage):
    """Every command that trains checks the machine and the model's files of all its runs before the first starts
    (worker processes included): one line, no data loaded, no run directory made."""
    argv = [*STUDY_COMMANDS[command], *MACHINE_DAMAGES[damage]]
    if command == "reproduce" and damage == "missing text model":
        argv = ["reproduce", "wordnet", "--smoke", "--jobs", "2", "--model", "/nonexistent/encoder"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note:")]
    assert len(lines) == 1 and lines[0].startswith(f"itra {command}: error: "), lines
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _given_at_default() -> list[list[str]]:
    """Every config flag of `itra train`, given at its default value (a switch as itself; a field without a default
    value at a value of its type): what `--resume` must refuse as surely as any other value."""
    from itra.cli import _flag_type
    from itra.config import LAUNCH_FIELDS

    hints, cases = typing.get_type_hints(TrainConfig), []
    for field in dataclasses.fields(TrainConfig):
        if field.name in LAUNCH_FIELDS:
            continue
        flag, kind = "--" + field.name.replace("_", "-"), _flag_type(hints[field.name])
        value = field.default if field.default is not None else {int: 1, float: 0.5, str: "x"}[kind]
        cases.append([flag] if kind is bool else [flag, str(value)])
    return cases


# torchrun's environment, as a stale shell or a half-made launch leaves it: (variables set, what the line names)
LAUNCH_DAMAGES = {
    **{f"{name}={text!r}": ({name: text}, name) for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK")
       for text in ("abc", "", "1.5", "-1", " ", "²")},
    "WORLD_SIZE='0'": ({"WORLD_SIZE": "0"}, "WORLD_SIZE"),
    "WORLD_SIZE alone": ({"WORLD_SIZE": "2"}, "RANK, MASTER_ADDR, MASTER_PORT are not set"),
    "no MASTER_PORT": ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1"}, "MASTER_PORT is not set"),
    "RANK past WORLD_SIZE": ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
                             "RANK below WORLD_SIZE=2"),
}
LAUNCH_CASES = [(command, damage) for command in COMMAND_ARGS for damage in LAUNCH_DAMAGES]


@pytest.mark.parametrize("command, damage", LAUNCH_CASES, ids=[f"{c}-{d}" for c, d in LAUNCH_CASES])
def test_a_bad_torchrun_environment_is_one_line_before_any_work(tmp_path, capsys, monkeypatch, no_data, command, damage):
    """Every command reads torchrun's variables first: a value torchrun would never set, or a WORLD_SIZE > 1 without
    what the process group's rendezvous needs, is one line naming the variable, not int()'s or torch's traceback."""
    variables, names = LAUNCH_DAMAGES[damage]
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main([command, *COMMAND_ARGS[command], "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and names in err, err
    assert not (tmp_path / "out").exists()


def test_a_bad_torchrun_environment_is_one_line_from_the_shell(tmp_path):
    """The same from `python -m itra`, where a module read at import would come before `main` (Launch's default)."""
    env = {**os.environ, "WORLD_SIZE": "abc"}
    done = subprocess.run([sys.executable, "-m", "itra", "train", "--dataset", "digits", "--out", str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "WORLD_SIZE" in done.stderr, done.stderr


BAD_ENDPOINTS = {  # HF_ENDPOINT: why it is no URL of the Hub
    "": "not an http(s) URL with a host", "huggingface.co": "not an http(s) URL with a host",
    "ftp://mirror.example": "not an http(s) URL with a host", "https://": "not an http(s) URL with a host",
    "https://:8080": "not an http(s) URL with a host", "http://[::1": "Invalid IPv6 URL",
    "http://mirror:99999": "Port out of range 0-65535", "http://mirror:abc": "Port could not be cast",
    "https://mirror:-1": "Port",
}


@pytest.mark.parametrize("endpoint", BAD_ENDPOINTS)
def test_an_hf_endpoint_that_is_not_a_url_is_one_line_naming_it(monkeypatch, endpoint):
    from itra.data.hub import hub_address

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(BadValue) as error:
        hub_address()
    message = str(error.value)
    assert "\n" not in message and "HF_ENDPOINT" in message and repr(endpoint) in message, message
    assert BAD_ENDPOINTS[endpoint] in message


@pytest.mark.parametrize("endpoint, address", [("https://huggingface.co", ("huggingface.co", 443)),
                                               ("http://mirror.local", ("mirror.local", 80)),
                                               ("https://[::1]:8443/", ("::1", 8443))])
def test_an_hf_endpoint_gives_its_host_and_port(monkeypatch, endpoint, address):
    from itra.data.hub import hub_address

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert hub_address() == address


@pytest.mark.parametrize("endpoint", ["http://[::1", "http://mirror:abc"])
@pytest.mark.parametrize("command", [["-m", "itra", "train", "--dataset", "kmnist", "--epochs", "1"],
                                     ["-c", "import itra.models.text"]], ids=["itra-train-hub-data", "import-text"])
def test_a_bad_hf_endpoint_is_one_line_before_a_hugging_face_library_parses_it(tmp_path, endpoint, command):
    """huggingface_hub parses HF_ENDPOINT when it is imported, with urllib's traceback for a bad port or host: from
    the shell (a fresh process, where the import comes first) the Hub's datasets and the text models say it in one
    line."""
    pytest.importorskip("datasets")
    out = ["--out", str(tmp_path / "out")] if command[0] == "-m" else []
    done = subprocess.run([sys.executable, *command, *out], env={**os.environ, "HF_ENDPOINT": endpoint}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    if command[0] == "-m":  # the command line: one line
        assert done.returncode == 2 and done.stderr.count("\n") == 1 and "HF_ENDPOINT" in done.stderr, done.stderr
    else:  # the Python API: itra's error naming the variable, not urllib's
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode == 1 and last.startswith("itra.errors.BadValue: Expected the environment variable "
                                                        "HF_ENDPOINT"), done.stderr


@pytest.mark.parametrize("flags", [["--epochs", "10"], ["--lam", "0.1"], ["--seed", "3"], ["--method", "ce"],
                                   ["--tensorboard"], ["--workers", "2"], *_given_at_default()],
                         ids=lambda flags: " ".join(flags))
def test_a_config_flag_given_with_resume_is_refused(tmp_path, capsys, no_data, flags):
    assert main(["train", "--resume", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume reads the run's own config" in err and f"leave {flags[0]} out" in err


def test_a_validation_split_under_two_samples_per_class_is_one_line(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--method", "ce", "--val-split", "5", "--out", str(tmp_path),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--val-split 5 is too small for the 10 classes of digits: use at least 20" in err
    assert not any(tmp_path.iterdir())


def test_table_only_without_an_ended_run_is_one_line_and_writes_nothing(tmp_path, capsys, no_data):
    assert main(["reproduce", "fashion-mnist", "--table-only", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"no run of fashion-mnist has ended under {tmp_path}" in err
    assert not any(tmp_path.iterdir())


def test_the_split_pairing_says_the_batch_size_typed(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--pairing", "split", "--batch-size", "719", "--epochs", "1",
                 "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--batch-size 719 (2 x 719 samples a step with --pairing split)" in err
    assert "use at most 718" in err and "1438" not in err


def test_lam_zero_has_no_warmup_note_and_workers_on_memory_data_is_one_note(tmp_path, capsys):
    assert main(["train", "--dataset", "digits", "--lam", "0", "--workers", "3", "--epochs", "1",
                 "--train-subset", "128", "--batch-size", "64", "--out", str(tmp_path), "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert notes == ["note: --workers 3: digits is held in memory and sliced a batch at a time; no worker process "
                     "is started"]


# ---------------------------------------------------------------- (b) public functions x bad arguments


def _features(n=6, d=3, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _with(value, index=(0, 0)):
    def damage(t):
        t = t.clone()
        t[index] = value
        return t
    return damage


def _sparse_csr(t):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta state"
        return t.to_sparse_csr()


FEATURE_DAMAGES = {
    "numpy": lambda t: t.numpy(), "list": lambda t: t.tolist(), "text": lambda t: "abc",
    "integer dtype": lambda t: t.long(), "1-D": lambda t: t[:, 0], "empty": lambda t: t[:0],
    "no feature": lambda t: t[:, :0],
    "NaN": _with(math.nan), "inf": _with(math.inf),
    "sparse": lambda t: t.to_sparse(), "sparse CSR": _sparse_csr, "meta": lambda t: t.to("meta"),
}
LABEL_DAMAGES = {
    "numpy": lambda y: y.numpy(), "list": lambda y: y.tolist(), "text": lambda y: "abc",
    "float dtype": lambda y: y.float(), "bool dtype": lambda y: y.bool(), "label K": _with(3, 0), "label -1": _with(-1, 0), "2-D": lambda y: y[:, None],
    "one too few": lambda y: y[1:],
    "sparse": lambda y: y.to_sparse(), "meta": lambda y: y.to("meta"),
}
SCALAR_DAMAGES = {"NaN": math.nan, "inf": math.inf, "negative": -1, "zero": 0, "fraction": 1.5, "text": "abc",
                  "bool": True, "huge": 10**30, "None": None}
# a bool argument: anything else is refused, not read by its truth value ("no" is true)
FLAG_DAMAGES = {"text": "no", "None": None, "number": 1}


def _dataset(n=20):
    return torch.utils.data.TensorDataset(_features(n), torch.arange(n) % 3)


def _paired(**kwargs):
    from itra import PairedLoader

    next(iter(PairedLoader(**{"dataset": _dataset(), "batch_size": 4, **kwargs})))


def _module(**kwargs):
    from itra.integrations.lightning import ITRAModule

    ITRAModule(**kwargs)


def _datamodule(**kwargs):
    from itra.integrations.lightning import PairedDataModule

    PairedDataModule(**kwargs)


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter(_dataset())


def _classifier(head=None):
    from itra.models.classifier import Classifier

    return Classifier(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), head or nn.Linear(4, 3))


def _trainer(**kwargs):
    pytest.importorskip("transformers")
    from transformers import TrainingArguments

    from itra.integrations.transformers import ITRATrainer

    model = nn.Sequential()
    model.add_module("body", nn.Linear(3, 4))
    model.add_module("classifier", nn.Linear(4, 3))
    args = TrainingArguments("unused", report_to=[], use_cpu=True)
    ITRATrainer(model, args, **kwargs)


def _split(**kwargs):
    from itra.models.adapter import split_classifier

    split_classifier(**{"model": nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), "head_name": "2", **kwargs})


# name: (call with keyword arguments, valid arguments, {argument: damages}, scalar damages that are valid)
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
FUNCTIONS = {
    "mmd": (lambda **a: __import__("itra").mmd(**a), dict(x=_features(), y=_features(seed=1)),
            {"x": FEATURE_DAMAGES, "y": FEATURE_DAMAGES, "bandwidth": SCALAR_DAMAGES, "squared": FLAG_DAMAGES},
            {"bandwidth": {"fraction", "huge"}}),
    "class_conditional_mmd": (lambda **a: __import__("itra").class_conditional_mmd(**a),
                              dict(h1=_features(), y1=LABELS, h2=_features(seed=1), y2=LABELS, num_classes=3),
                              {"h1": FEATURE_DAMAGES, "y1": LABEL_DAMAGES, "h2": FEATURE_DAMAGES, "y2": LABEL_DAMAGES,
                               "num_classes": SCALAR_DAMAGES, "bandwidth": SCALAR_DAMAGES, "squared": FLAG_DAMAGES},
                              {"bandwidth": {"fraction", "huge"}}),
    "ITRALoss": (lambda h1, y1, h2, y2, **a: __import__("itra").ITRALoss(**a)(h1, y1, h2, y2),
                 dict(h1=_features(), y1=LABELS, h2=_features(seed=1), y2=LABELS, num_classes=3),
                 {"h1": FEATURE_DAMAGES, "y1": LABEL_DAMAGES, "h2": FEATURE_DAMAGES, "y2": LABEL_DAMAGES,
                  "num_classes": SCALAR_DAMAGES, "bandwidth": SCALAR_DAMAGES, "conditional": FLAG_DAMAGES,
                  "validate_args": FLAG_DAMAGES, "squared": FLAG_DAMAGES},
                 {"bandwidth": {"fraction", "huge"}, "num_classes": {"None"}}),
    "CenterLoss": (lambda features, labels, **a: __import__("itra").CenterLoss(**a)(features, labels),
                   dict(features=_features(), labels=LABELS, num_classes=3, feat_dim=3),
                   {"features": FEATURE_DAMAGES, "labels": LABEL_DAMAGES, "num_classes": SCALAR_DAMAGES,
                    "feat_dim": SCALAR_DAMAGES, "alpha": SCALAR_DAMAGES, "validate_args": FLAG_DAMAGES},
                   {"alpha": {"zero"}}),
    "PairedLoader": (_paired, {}, {"dataset": {"number": 3, "None": None, "iterable": _Stream()}, "seed": SCALAR_DAMAGES, "batch_size": SCALAR_DAMAGES,
                                  "second_batch_size": SCALAR_DAMAGES, "num_workers": SCALAR_DAMAGES,
                                  "drop_last": FLAG_DAMAGES, "paired": FLAG_DAMAGES, "pin_memory": FLAG_DAMAGES,
                                  "collate_fn": {"number": 3, "text": "abc"}},
                     {"seed": {"zero"}, "second_batch_size": {"None"}, "num_workers": {"zero"}}),
    "fit_temperature": (lambda **a: __import__("itra.calibration").calibration.fit_temperature(**a),
                        dict(logits=_features(), labels=LABELS),
                        {"logits": FEATURE_DAMAGES, "labels": LABEL_DAMAGES, "tolerance": SCALAR_DAMAGES},
                        {"tolerance": {"fraction", "huge"}}),
    "ITRAModule": (_module, dict(model=_classifier()),
                   {"model": {"Sequential": lambda _: nn.Sequential(nn.Linear(3, 3)), "None": None,
                              "Sequential head": lambda _: _classifier(nn.Sequential(nn.Linear(4, 3)))},
                    "lam": SCALAR_DAMAGES, "bandwidth": SCALAR_DAMAGES, "conditional": FLAG_DAMAGES,
                    "squared": FLAG_DAMAGES, "s2_state": {"text": "abc", "None": None},
                    "lam_warmup": SCALAR_DAMAGES, "lam_warmup_ratio": SCALAR_DAMAGES,
                    "optimizer": {"number": 3, "text": "abc"}},
                   {"lam": {"zero", "fraction", "huge"}, "bandwidth": {"fraction", "huge"},
                    "lam_warmup": {"zero", "huge", "None"}}),
    "PairedDataModule": (_datamodule, dict(train_set=_dataset(), batch_size=4),
                         {"train_set": {"number": 3, "None": None, "iterable": _Stream()},
                          "batch_size": SCALAR_DAMAGES, "second_batch_size": SCALAR_DAMAGES, "seed": SCALAR_DAMAGES,
                          "num_workers": SCALAR_DAMAGES, "pin_memory": FLAG_DAMAGES,
                          "collate_fn": {"number": 3, "text": "abc"}, "val_set": {"number": 3},
                          "test_set": {"number": 3}},
                         {"seed": {"zero"}, "second_batch_size": {"None"}, "num_workers": {"zero"}}),
    "ITRATrainer": (_trainer, {}, {"lam": SCALAR_DAMAGES, "bandwidth": SCALAR_DAMAGES, "conditional": FLAG_DAMAGES,
                                   "squared": FLAG_DAMAGES, "s2_state": {"text": "abc", "None": None},
                                   "head_name": {"missing": "fc", "not linear": "body.x", "number": 3},
                                   "lam_warmup": SCALAR_DAMAGES, "lam_warmup_ratio": SCALAR_DAMAGES},
                    {"lam": {"zero", "fraction", "huge"}, "bandwidth": {"fraction", "huge"},
                     "lam_warmup": {"zero", "huge", "None"}}),
    "split_classifier": (_split, {}, {"model": {"name": "resnet18", "number": 3, "None": None},
                                      "head_name": {"missing": "fc", "not linear": "1", "number": 3},
                                      "example_input": {"wrong width": torch.randn(2, 5), "text": "abc"}}, {}),
}


def _cases():
    for name, (_, valid, damages, allowed) in FUNCTIONS.items():
        for argument, kinds in damages.items():
            for kind in kinds:
                if kind not in allowed.get(argument, ()):
                    yield name, argument, kind


BAD_ARGUMENTS = list(_cases())


@pytest.mark.parametrize("name, argument, kind", BAD_ARGUMENTS, ids=["-".join(case) for case in BAD_ARGUMENTS])
def test_every_public_function_names_a_bad_argument(name, argument, kind):
    call, valid, damages, _ = FUNCTIONS[name]
    damage = damages[argument][kind]
    value = damage(valid[argument]) if callable(damage) else damage
    with pytest.raises(BadValue) as error:
        call(**{**valid, argument: value})
    message = str(error.value)
    assert "\n" not in message and argument.strip("_") in message, message


FEATURE_PAIRS = {name: [a for a, kinds in FUNCTIONS[name][2].items() if kinds is FEATURE_DAMAGES] for name in FUNCTIONS}
EMPTY = {"no sample": lambda t: t[:0], "no feature": lambda t: t[:, :0], "neither": lambda t: t[:0, :0]}


@pytest.mark.parametrize("name", [name for name, pair in FEATURE_PAIRS.items() if len(pair) == 2])
@pytest.mark.parametrize("kind", list(EMPTY))
def test_both_feature_batches_empty_alike_are_refused(name, kind):
    """Emptied alike, the two batches agree in width, so only the check of each finds them empty."""
    call, valid, _, _ = FUNCTIONS[name]
    first, second = FEATURE_PAIRS[name]
    with pytest.raises(BadValue, match=f"Expected `{first}` to hold at least one sample of at least one feature"):
        call(**{**valid, first: EMPTY[kind](valid[first]), second: EMPTY[kind](valid[second])})


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_the_valid_arguments_are_valid(name):
    call, valid, _, _ = FUNCTIONS[name]
    call(**valid)


SIZE_NAMES = ("num_classes", "feat_dim", "batch_size", "second_batch_size")  # arguments that size a tensor
SIZES = [(name, argument, value) for name, (_, _, damages, _) in FUNCTIONS.items() for argument in damages
         if argument in SIZE_NAMES for value in (10**12, 2**62, 2**63 - 1)]


@pytest.mark.parametrize("name, argument, value", SIZES, ids=[f"{n}-{a}-{v}" for n, a, v in SIZES])
def test_a_size_beyond_memory_computes_or_is_one_line(name, argument, value):
    """An integer size below 2**63 that `check_count` lets through, but that no machine could allocate a tensor of:
    the function computes without it (`class_conditional_mmd`'s min(K, N) slots), or says so in one line naming it,
    never torch's allocator error."""
    call, valid, _, _ = FUNCTIONS[name]
    try:
        result = call(**{**valid, argument: value})
    except BadValue as error:
        message = str(error)
        assert "\n" not in message and argument in message, message
    else:
        assert not isinstance(result, torch.Tensor) or torch.isfinite(result).all()


# ---------------------------------------------------------------- (c) split_classifier x model shapes


class Net(nn.Module):
    """`body` -> `names[0]` (hidden Linear 8->6) -> ReLU -> `names[1]` (the head, 6->3) -> `after`."""

    def __init__(self, names=("hidden", "fc"), after=None):
        super().__init__()
        self.names, self.after = names, after
        self.body = nn.Linear(4, 8)
        setattr(self, names[0], nn.Linear(8, 6))
        setattr(self, names[1], nn.Linear(6, 3))

    def forward(self, x):
        h = getattr(self, self.names[0])(self.body(x).relu()).relu()
        logits = getattr(self, self.names[1])(h)
        return logits if self.after is None else self.after(logits)


AFTER = {"nothing": None, "log_softmax": lambda z: F.log_softmax(z, 1), "softmax": lambda z: z.softmax(1),
         "scale": lambda z: 2 * z, "shift": lambda z: z + 1}
NAMES = {"hidden, fc": ("hidden", "fc"), "fc, out (misleading)": ("fc", "out"), "fc, classifier": ("fc", "classifier"),
         "classifier, head (misleading)": ("classifier", "head")}
SHAPES = [(after, names) for after in AFTER for names in NAMES]


@pytest.mark.parametrize("after, names", SHAPES, ids=[f"{a}-{n}" for a, n in SHAPES])
def test_split_classifier_gives_the_models_logits_or_refuses(after, names):
    from itra.models.adapter import find_classification_layer, split_classifier

    torch.manual_seed(0)
    model, x = Net(NAMES[names], AFTER[after]).eval(), torch.randn(5, 4)
    expected = model(x).detach()
    right = find_classification_layer(model) == NAMES[names][1] and after == "nothing"
    if not right:
        with pytest.raises(BadValue, match="differs from the output of Net on example_input") as error:
            split_classifier(model, example_input=x)
        assert "\n" not in str(error.value)
        torch.testing.assert_close(model(x), expected)  # the model is left whole
        return
    split = split_classifier(model, example_input=x)
    torch.testing.assert_close(split(x), expected)
    torch.testing.assert_close(split.head(split.extractor(x)), expected)


def test_the_right_head_name_splits_a_misleading_model():
    from itra.models.adapter import split_classifier

    model, x = Net(("fc", "out")).eval(), torch.randn(5, 4)
    expected = model(x).detach()
    split = split_classifier(model, head_name="out", example_input=x)
    torch.testing.assert_close(split(x), expected)
    assert split.feature_dim == 6


# ---------------------------------------------------------------- no network: one line, without the Hub's retries


def test_a_hub_model_or_dataset_without_the_network_is_one_line_without_retries(monkeypatch):
    import datasets
    from huggingface_hub import constants

    from itra.data import hub
    from itra.errors import NoNetwork
    from itra.models import text

    monkeypatch.setattr(text, "hub_reachable", lambda: False)
    with pytest.raises(NoNetwork, match="--model no-such-org/no-such-encoder is not in the Hugging Face cache") as error:
        text.load_tokenizer("no-such-org/no-such-encoder")
    assert "\n" not in str(error.value)

    hub.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)  # a proxy is trusted to reach the Hub
    before, seen = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE), []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: seen.append(
        (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)) or {"train": 1, "test": 2})
    try:
        assert hub.load_hub_dataset_dict("toy", "org/toy", None) == {"train": 1, "test": 2}
    finally:
        hub.hub_reachable.cache_clear()
    assert seen == [(True, True)]  # the clients' offline mode: their caches, no retries
    assert (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE) == before  # restored after
