"""The run directory: atomic files, strict JSON, a torn last metrics line, damaged files named."""
import json

import pytest
import torch

from itra import rundir
from tests.helpers import resolved


def test_config_round_trip_and_old_runs_are_rejected(tmp_path):
    config = resolved(method="center", lam=0.1, seed=3)
    rundir.write_config(tmp_path, config)
    assert rundir.read_config(tmp_path) == config
    values = json.loads((tmp_path / "config.json").read_text())
    del values["run_format"]  # what itra before 0.2 wrote
    (tmp_path / "config.json").write_text(json.dumps(values))
    with pytest.raises(ValueError, match="written by itra before 0.2"):
        rundir.read_config(tmp_path)


def test_a_text_run_whose_encoder_directory_has_moved_still_reads(tmp_path):
    """The run's config reads back (for `itra report`) without the encoder it trained from; training it again
    is what needs the directory (`runs.check_model_files`)."""
    from itra.experiments.runs import check_model_files

    encoder = tmp_path / "encoder"
    encoder.mkdir()
    config = resolved(dataset="wordnet", model=str(encoder), method="ce")
    check_model_files(config)
    rundir.write_config(tmp_path, config)
    encoder.rmdir()
    assert rundir.read_config(tmp_path) == config
    with pytest.raises(FileNotFoundError, match=f"--model {encoder}: no such directory"):
        check_model_files(config)


def test_no_file_holds_nan_or_infinity(tmp_path):
    rundir.write_summary(tmp_path, {"test_cross_entropy": float("nan"), "rows": [1.0, float("inf")]})
    row = {"epoch": 1, "test_accuracy": 50.0, "test_cross_entropy": float("inf"), "test_ece": 0.1}
    rundir.append_metrics(tmp_path, {**row, "compactness": [[50, float("nan")]]})
    summary = json.loads((tmp_path / "summary.json").read_text())  # the standard parser rejects NaN only if asked:
    assert "NaN" not in (tmp_path / "summary.json").read_text() and summary == {"test_cross_entropy": None, "rows": [1.0, None]}
    assert rundir.read_metrics(tmp_path) == [{**row, "test_cross_entropy": None, "compactness": [[50, None]]}]


def test_a_torn_last_line_is_dropped_with_a_note(tmp_path, capsys):
    for epoch in (1, 2):
        rundir.append_metrics(tmp_path, {"epoch": epoch, "test_accuracy": 50.0, "test_cross_entropy": 1.0,
                                         "test_ece": 0.1})
    with open(tmp_path / "metrics.jsonl", "a") as log:
        log.write('{"epoch": 3, "test_accu')  # killed while writing
    assert [row["epoch"] for row in rundir.read_metrics(tmp_path)] == [1, 2]
    assert "dropped a torn last line" in capsys.readouterr().err


def test_a_damaged_line_before_the_last_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1\n{"epoch": 2}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 1: not valid JSON"):
        rundir.read_metrics(tmp_path)


def test_a_truncated_checkpoint_is_one_clear_error(tmp_path):
    from itra import checkpoint

    rundir.write_config(tmp_path, resolved(dataset="digits"))
    rundir.save_checkpoint(tmp_path, checkpoint.assemble({"epoch": 0, "elapsed_s": 0.0},
                                                         {"model": torch.nn.Linear(100, 10)}, [{}]))
    assert rundir.load_checkpoint(tmp_path)["epoch"] == 0
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError) as error:
        rundir.load_checkpoint(tmp_path)
    assert str(error.value).startswith(f"{path}: cannot be read, it is truncated or damaged") and "\n" not in str(error.value)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        rundir.load_checkpoint(tmp_path / "missing")


def test_summaries_say_whether_the_run_failed(tmp_path):
    assert rundir.read_summary(tmp_path) is None
    config = resolved(dataset="digits")
    rundir.write_config(tmp_path, config)
    rundir.write_summary(tmp_path, {"name": config.name, "status": "failed", "reason": "diverged", "epoch": 0})
    assert rundir.is_failed(rundir.read_summary(tmp_path))
    (tmp_path / "summary.json").write_text('{"status": ')
    with pytest.raises(ValueError, match="summary.json: not valid JSON"):
        rundir.read_summary(tmp_path)


def test_one_writer_per_run_directory(tmp_path):
    import multiprocessing

    from itra.rundir import writing

    run_dir = tmp_path / "run"
    with writing(run_dir, resume=False):
        # another process (flock is per open file: a second process is what two commands are)
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            error = pool.apply(_try_writing, (run_dir,))
        assert error.startswith(f"{run_dir} is being trained by another itra process") and "\n" not in error
    assert _try_writing(run_dir) == ""  # released at the end
    (run_dir / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="was written by another itra process while this one started"):
        with writing(run_dir, resume=False):
            pass
    with writing(run_dir, resume=True):  # a resume continues what is there
        pass


def _try_writing(run_dir):
    from itra.rundir import writing

    try:
        with writing(run_dir, resume=True):
            return ""
    except ValueError as error:
        return str(error)


WRITES = {"write_json": lambda run_dir: rundir.write_json(run_dir / "summary.json", {"status": "finished"}),
          "rewrite_metrics": lambda run_dir: rundir.rewrite_metrics(run_dir, [{"epoch": 1}]),
          "save_checkpoint": lambda run_dir: rundir.save_checkpoint(run_dir, {"epoch": 1, "weights": torch.zeros(9)})}


@pytest.mark.parametrize("write", WRITES)
@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_a_failed_write_is_one_line_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch, write, failing):
    """One durable writer (`write_atomic`) under all three: a full disk wherever it is met is a `CannotWrite` naming
    the file, the file before the write is intact, and no `.tmp` is left."""
    import errno
    import io
    import os

    from itra.errors import CannotWrite, UserError

    WRITES[write](tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    class Full(io.BytesIO):  # the temporary file is made; writing to it fails
        write = full

    if failing == "write":
        real_open = open
        monkeypatch.setattr(rundir, "open", lambda path, mode: (real_open(path, mode).close(), Full())[1],
                            raising=False)
    else:
        monkeypatch.setattr(os, failing, full)
    with pytest.raises(CannotWrite) as error:
        WRITES[write](tmp_path)
    monkeypatch.undo()
    (name,) = before
    assert isinstance(error.value, UserError) and "\n" not in str(error.value)
    assert str(error.value).startswith(f"{tmp_path / name}: cannot be written ([Errno 28] No space left on device)")
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # no .tmp, the old file intact


def test_a_checkpoint_or_summary_of_another_run_or_out_of_step_is_refused(tmp_path):
    """The identity a checkpoint and a summary carry: the run's config, the rows they follow and their digest."""
    from itra import checkpoint

    config = resolved(dataset="digits", method="ce")
    rows = [{"epoch": 1, "test_accuracy": 50.0, "test_cross_entropy": 1.0, "test_ece": 0.1, "elapsed_s": 1.0}]
    rundir.write_config(tmp_path, config)
    rundir.rewrite_metrics(tmp_path, rows)
    parts = {"model": torch.nn.Linear(2, 2)}

    def save(of, epoch=1, follows=rows):
        rundir.save_checkpoint(tmp_path, checkpoint.assemble(
            {"epoch": epoch, "elapsed_s": 1.0, "identity": rundir.identity(of, follows)}, parts, [{}]))

    save(config)
    assert rundir.load_checkpoint(tmp_path)["epoch"] == 1
    assert rundir.identity(config, [{**rows[0], "elapsed_s": 9.0}]) == rundir.identity(config, rows)  # timing aside
    save(resolved(dataset="digits", method="lsr"))
    with pytest.raises(ValueError, match=r"checkpoint.pt is of another run than digits-cnn-ce-bs128-e15-seed0, .*"
                                         r"\(method 'lsr' / 'ce'; smoothing 0.1 / None\)"):
        rundir.load_checkpoint(tmp_path)
    save(config, follows=[{**rows[0], "test_accuracy": 60.0}])
    with pytest.raises(ValueError, match="follows other metrics rows than the 1 of"):
        rundir.load_checkpoint(tmp_path)
    save(config, epoch=2, follows=rows * 2)
    with pytest.raises(ValueError, match="lacks the rows of epochs 2 that its checkpoint has trained"):
        rundir.load_checkpoint(tmp_path)

    summary = {"name": config.name, "status": "finished", **rows[0], "identity": rundir.identity(config, rows)}
    rundir.write_summary(tmp_path, summary)
    assert rundir.read_summary(tmp_path) == summary
    rundir.write_summary(tmp_path, {**summary, "identity": rundir.identity(resolved(dataset="digits"), rows)})
    with pytest.raises(ValueError, match="summary.json is of another run"):
        rundir.read_summary(tmp_path)
    legacy = {key: value for key, value in summary.items() if key != "identity"}  # itra up to 0.3.0: name and epoch
    rundir.write_summary(tmp_path, legacy)
    assert rundir.read_summary(tmp_path) == legacy
    rundir.write_summary(tmp_path, {**legacy, "name": "another-run"})
    with pytest.raises(ValueError, match=r"summary.json is of another run \(another-run\)"):
        rundir.read_summary(tmp_path)
    rundir.rewrite_metrics(tmp_path, rows * 0)
    rundir.write_summary(tmp_path, legacy)
    with pytest.raises(ValueError, match="lacks the rows of epochs 1 that its summary.json says were trained"):
        rundir.read_summary(tmp_path)


@pytest.mark.parametrize("line, problem", [
    ("[1, 2, 3]", "a list ([1, 2, 3]), not a row of metrics"), ('"x"', "a str ('x'), not a row of metrics"),
    ("null", "a NoneType (None), not a row of metrics"), ('{"epoch": 2}', "epoch 2 where epoch 1 was expected"),
    ('{"epoch": true}', "epoch True where epoch 1 was expected"), ('{"epoch": 1}', "no test_accuracy"),
    ('{"epoch": 1, "test_accuracy": "abc", "test_cross_entropy": 1, "test_ece": 0}',
     "test_accuracy is 'abc', not a number"),
])
def test_a_metrics_row_of_the_wrong_shape_names_its_line(tmp_path, line, problem):
    (tmp_path / "metrics.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 1: " + __import__("re").escape(problem)):
        rundir.read_metrics(tmp_path)


def test_first_line_of_an_exception_without_a_message_is_its_type():
    from itra.errors import first_line

    assert first_line(EOFError()) == "EOFError"
    assert first_line(RuntimeError("\n  \nsize mismatch\nmore")) == "size mismatch"
