"""Damaged run files, as a class: every file of a run directory x every kind of damage x every command that reads
that file, each instance run in-process (`itra.cli.main`) on a copy of a tiny run made once.

An instance ends in one of two ways, and the grid says which (`expected`): refused, with exit status 2 and one line
on stderr naming the damaged file; or a documented behaviour (`DOCUMENTED`): e.g. a torn last line of metrics.jsonl is
dropped, a run without summary.json has not ended and resumes from its checkpoint, a checkpoint of itra up to 0.3.0
(no identity) is accepted where its epoch and weights fit. "another" copies the same file of another run (another
model, method, subset and batch size) into the run; "another-legacy" does so with a checkpoint as itra up to 0.3.0
wrote it.
"""
from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
from pathlib import Path

import pytest
import torch

from itra import rundir
from itra.cli import main

pytest.importorskip("sklearn")  # the digits dataset

CONFIG, METRICS, CHECKPOINT, SUMMARY = rundir.CONFIG, rundir.METRICS, rundir.CHECKPOINT, rundir.SUMMARY
# The "digits" preset's CE run in its smoke size (so that `reproduce --table-only` reads it), and a ViT run of label
# smoothing (a model with exits, which `itra similarity` measures); each is the other's "another run".
CNN = ["--dataset", "digits", "--model", "cnn", "--method", "ce", "--epochs", "1", "--batch-size", "64",
       "--train-subset", "1000", "--test-subset", "300", "--device", "cpu", "--quiet"]
VIT = ["--dataset", "digits", "--model", "vit", "--method", "lsr", "--epochs", "1", "--batch-size", "32",
       "--train-subset", "64", "--test-subset", "32", "--device", "cpu", "--quiet"]
STUDY = "reproduce-digits-cnn-smoke"  # the preset's table.json: its step times are reused, not measured per instance

EVERY_FILE = ("deleted", "empty", "random", "truncated", "another")
WRONG_JSON = ("list", "string", "null", "number", "missing-keys", "wrong-types", "unknown-keys", "non-finite")
DAMAGES = {CONFIG: EVERY_FILE + WRONG_JSON,
           METRICS: EVERY_FILE + WRONG_JSON + ("torn-last-line", "extra-row"),
           SUMMARY: EVERY_FILE + WRONG_JSON + ("legacy",),
           CHECKPOINT: EVERY_FILE + ("not-a-dict", "missing-keys", "wrong-types", "legacy", "another-legacy")}
# The commands that read each file: of an ended run ("finished"), and of a killed one (no summary.json: resumed).
READERS = {"finished": {CONFIG: ("train", "sweep", "resume", "report", "reproduce", "similarity", "ood"),
                        METRICS: ("train", "sweep", "resume", "report", "reproduce", "similarity", "ood"),
                        SUMMARY: ("train", "sweep", "resume", "report", "reproduce", "ood"),
                        CHECKPOINT: ("report", "similarity", "ood")},
           "killed": {CONFIG: ("train", "sweep", "resume"), METRICS: ("train", "sweep", "resume"),
                      CHECKPOINT: ("train", "sweep", "resume")}}
# (state, file, damage): {command: what happens} where it is not a refusal naming the file
NOT_A_RUN = "no run"  # exit 2: "No finished runs" (a folder without config.json or summary.json has no ended run)
NONE_ENDED = "none ended"  # exit 2: `reproduce --table-only` of a study none of whose runs has ended has no table
OK = "ok"
DOCUMENTED = {
    ("finished", CONFIG, "deleted"): {"train": OK, "sweep": OK, "reproduce": OK,  # the summary is the command's run's
                                      "report": NOT_A_RUN, "ood": NOT_A_RUN},
    ("killed", CONFIG, "deleted"): {"train": OK, "sweep": OK},  # the checkpoint is the command's run's: resumed
    ("finished", SUMMARY, "deleted"): {"train": OK, "sweep": OK, "resume": OK,  # not ended: resumed
                                       "reproduce": NONE_ENDED, "report": NOT_A_RUN, "ood": NOT_A_RUN},
    ("killed", CHECKPOINT, "deleted"): {"train": OK, "sweep": OK, "resume": OK},  # nothing to resume: trained afresh
    ("finished", METRICS, "extra-row"): {"similarity": OK},  # a kill between a row and its checkpoint leaves one more
    ("killed", METRICS, "extra-row"): {"train": OK, "sweep": OK, "resume": OK},  # that row is trained again
    **{(state, METRICS, "torn-last-line"): {command: OK for command in READERS[state][METRICS]}  # dropped, with a note
       for state in READERS},
    **{(state, CHECKPOINT, "legacy"): {command: OK for command in READERS[state][CHECKPOINT]} for state in READERS},
    ("finished", SUMMARY, "legacy"): {command: OK for command in READERS["finished"][SUMMARY]},
}


def expected(state: str, file: str, damage: str, command: str) -> str:
    """"refused" (exit 2, one line naming the file) or the documented outcome."""
    return DOCUMENTED.get((state, file, damage), {}).get(command, "refused")


CASES = [(state, file, damage, command) for state, files in READERS.items() for file, commands in files.items()
         for damage in DAMAGES[file] for command in commands]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The two runs, trained once, and the preset's table.json."""
    root = tmp_path_factory.mktemp("prepared").resolve()
    assert main(["train", *CNN, "--out", str(root / "cnn")]) == 0
    assert main(["train", *VIT, "--out", str(root / "vit")]) == 0
    assert main(["reproduce", "digits", "--smoke", "--table-only", "--seeds", "1", "--out", str(root / "cnn"),
                 "--quiet"]) == 0
    runs = {name: next(path for path in (root / name).iterdir() if path.name != STUDY) for name in ("cnn", "vit")}
    assert main(["ood", str(runs["cnn"]), "--out", str(root / "ood")]) == 0
    return root, runs


def damage(path: Path, kind: str, other: Path) -> None:
    """Damage the run file `path` by `kind`; `other` is the same file of another run."""
    text = path.read_bytes() if path.exists() else b""
    if kind == "deleted":
        path.unlink()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(b"\xff" + random.Random(kind).randbytes(255))  # 0xff: never UTF-8
    elif kind == "truncated":
        path.write_bytes(text[:len(text) // 2])
    elif kind == "another":
        shutil.copyfile(other, path)
    elif path.name == CHECKPOINT:
        saved = torch.load(path if kind != "another-legacy" else other, weights_only=True)
        changed = {"not-a-dict": [1, 2, 3], "missing-keys": {k: v for k, v in saved.items() if k != "model"},
                   "wrong-types": {**saved, "epoch": "1"},
                   "legacy": {k: v for k, v in saved.items() if k != "identity"},
                   "another-legacy": {k: v for k, v in saved.items() if k != "identity"}}[kind]
        torch.save(changed, path)
    elif path.name == METRICS and kind in ("torn-last-line", "extra-row"):
        (row,) = [json.loads(line) for line in text.decode().splitlines()]
        line = '{"epoch": 2, "train_c' if kind == "torn-last-line" else json.dumps({**row, "epoch": 2}) + "\n"
        path.write_bytes(text + line.encode())
    else:  # valid JSON of the wrong shape: the whole file, or the row of metrics.jsonl
        value = json.loads(text.decode().splitlines()[0] if path.name == METRICS else text)
        missing = {CONFIG: ("method", "dataset"), METRICS: rundir.TEST_METRICS, SUMMARY: tuple(value)}[path.name]
        wrong = {CONFIG: {"lr": "abc"}, METRICS: {"test_accuracy": "abc"}, SUMMARY: {"epoch": "one"}}[path.name]
        # NaN, which itra never writes (a non-finite number is null): read as a number, it would be averaged in
        non_finite = {CONFIG: {"lr": math.nan}, METRICS: {"test_accuracy": math.nan},
                      SUMMARY: {"test_accuracy": math.nan}}[path.name]
        changed = {"list": [1, 2, 3], "string": "x", "null": None, "number": 3,
                   "missing-keys": {k: v for k, v in value.items() if k not in missing} or {"status": "finished"},
                   "wrong-types": {**value, **wrong}, "unknown-keys": {**value, "colour": "red"},
                   "non-finite": {**value, **non_finite},
                   "legacy": {k: v for k, v in value.items() if k != "identity"}}[kind]
        path.write_text(json.dumps(changed) + "\n")


def command_line(command: str, flags: list[str], run_dir: Path, out: Path, tmp: Path) -> list[str]:
    return {"train": ["train", *flags, "--out", str(out)],
            "sweep": ["sweep", *flags, "--seeds", "1", "--out", str(out)],
            "resume": ["train", "--resume", str(run_dir), "--quiet"],
            "report": ["report", str(out), "--out", str(tmp / "report"), "--timing-steps", "1", "--tsne-points", "20"],
            "similarity": ["similarity", str(run_dir), "--out", str(tmp / "similarity")],
            "ood": ["ood", str(run_dir), "--out", str(tmp / "ood")],
            "reproduce": ["reproduce", "digits", "--smoke", "--table-only", "--seeds", "1", "--out", str(out),
                          "--quiet"]}[command]


@pytest.mark.parametrize("state, file, damage_kind, command", CASES, ids=["-".join(case) for case in CASES])
def test_a_damaged_run_file_is_one_line_naming_it_or_documented(prepared, tmp_path, capsys, state, file, damage_kind,
                                                                command):
    root, runs = prepared
    mine, theirs = ("vit", "cnn") if command == "similarity" else ("cnn", "vit")
    out = tmp_path.resolve() / "runs"
    run_dir = out / runs[mine].name
    shutil.copytree(runs[mine], run_dir)
    if command == "reproduce":
        shutil.copytree(root / "cnn" / STUDY, out / STUDY)
    if state == "killed":
        (run_dir / SUMMARY).unlink()
    damage(run_dir / file, damage_kind, runs[theirs] / file)
    capsys.readouterr()

    code = main(command_line(command, CNN if mine == "cnn" else VIT, run_dir, out, tmp_path))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("note:", "itra train: note:"))]
    outcome = expected(state, file, damage_kind, command)
    if outcome == "refused":
        assert code == 2 and len(lines) == 1, err
        path = run_dir / file
        assert str(path) in lines[0] or (f"{run_dir} " in lines[0] and file in lines[0]), lines[0]
        assert "Traceback" not in err
    elif outcome == NOT_A_RUN:
        assert code == 2 and len(lines) == 1 and "No finished runs" in lines[0], err
    elif outcome == NONE_ENDED:
        assert code == 2 and len(lines) == 1 and "has ended" in lines[0], err
    else:
        assert code == 0, err
        if damage_kind == "torn-last-line" and command in ("resume", "train", "sweep") and state == "killed":
            assert "dropped a torn last line" in err


def test_the_grid_covers_every_file_damage_and_command():
    assert {file for _, file, _, _ in CASES} == {CONFIG, METRICS, SUMMARY, CHECKPOINT}
    assert {command for *_, command in CASES} == {"train", "sweep", "resume", "report", "reproduce", "similarity",
                                                  "ood"}
    assert len(CASES) > 300


# ---------------------------------------------------------------- files a command writes into --out and reads back
# reproduce --table-only reuses the step times of the study's table.json; ood reuses a run's measures, <run>.json
DERIVED_DAMAGES = ("empty", "random", "truncated", "list", "wrong-types", "non-finite", "another")
DERIVED_CASES = [(file, kind) for file in ("table.json", "measures") for kind in DERIVED_DAMAGES
                 if (file, kind) != ("table.json", "another")]  # another study's times are of other runs: timed anew


@pytest.mark.parametrize("file, damage_kind", DERIVED_CASES, ids=["-".join(case) for case in DERIVED_CASES])
def test_a_damaged_file_of_a_commands_own_output_is_one_line_naming_it(prepared, tmp_path, capsys, file, damage_kind):
    root, runs = prepared
    out = tmp_path.resolve() / "runs"
    run_dir = out / runs["cnn"].name
    shutil.copytree(runs["cnn"], run_dir)
    shutil.copytree(root / "cnn" / STUDY, out / STUDY)
    shutil.copytree(root / "ood", tmp_path / "ood")
    path = out / STUDY / "table.json" if file == "table.json" else tmp_path / "ood" / f"{run_dir.name}.json"
    if damage_kind in ("empty", "random", "truncated"):
        damage(path, damage_kind, path)
    else:
        value = json.loads(path.read_text())
        key, changed = ("step_seconds", {name: {"wrong-types": "abc", "non-finite": math.nan}.get(damage_kind)
                                         for name in value["step_seconds"]}) if file == "table.json" else \
            {"wrong-types": ("accuracy", "abc"), "non-finite": ("accuracy", math.nan), "another": ("run", "other")}.get(
                damage_kind, (None, None))
        path.write_text(json.dumps([1, 2, 3] if damage_kind == "list" else {**value, key: changed}))
    capsys.readouterr()

    argv = command_line("reproduce", CNN, run_dir, out, tmp_path) if file == "table.json" else \
        ["ood", str(run_dir), "--out", str(tmp_path / "ood")]
    code = main(argv)
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("note:")]
    assert code == 2 and len(lines) == 1 and str(path) in lines[0], lines


# ---------------------------------------------------------------- writes that fail, and a run directory that is a file
@pytest.mark.parametrize("command", ["train", "sweep", "reproduce"])
def test_a_file_where_the_run_directory_goes_is_one_line_before_data_loads(tmp_path, capsys, monkeypatch, command):
    import itra.experiments.runs as runs

    monkeypatch.setattr(runs, "load_splits", lambda config: pytest.fail("data loaded before the run directory"))
    name = "digits-cnn-ce-bs64-e1-n1000-test300-seed0"  # the preset's CE run of `CNN`
    (tmp_path / name).write_text("")
    assert main(command_line(command, CNN, tmp_path, tmp_path, tmp_path)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"{tmp_path / name} is a file, not a run directory" in line


@pytest.mark.parametrize("failing", ["open", "fsync"])
def test_a_full_disk_while_training_is_one_line_and_leaves_no_temporary_file(tmp_path, capsys, monkeypatch, failing):
    """ENOSPC as `open` or `fsync` meets it: the first file written (config.json) names itself; no .tmp is left."""
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if failing == "fsync":
        monkeypatch.setattr(os, "fsync", full)
    else:
        real_open = open

        def open_full(file, mode="r", *args, **kwargs):
            if "w" in mode or "a" in mode:
                full()
            return real_open(file, mode, *args, **kwargs)

        monkeypatch.setattr(rundir, "open", open_full, raising=False)
    assert main(["train", *VIT, "--out", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    (run_dir,) = tmp_path.iterdir()
    assert f"{run_dir / CONFIG}: cannot be written ([Errno 28] No space left on device): free some space" in line
    assert "choose another --out" in line and not list(run_dir.glob("*.tmp"))
