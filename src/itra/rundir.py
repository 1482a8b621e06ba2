"""The run directory: `config.json`, `metrics.jsonl`, `checkpoint.pt` and `summary.json`.

Every file is written so that a kill at any moment, or a crash of the machine, leaves it readable: JSON files and
the checkpoint go to a temporary file that is synced to disk and renamed over the old one (`write_atomic`), and
`metrics.jsonl` only ever grows by whole, synced lines, so at worst its last line is torn, which `read_metrics` drops
(the checkpoint is the truth). No file holds NaN or infinity: they are written as `null` (strict JSON). A write that
fails (a full disk) is one line naming the file, and leaves no temporary file.

A run's files know whose they are: the checkpoint and the summary carry their `identity` (the run's config and the
metrics rows they follow), and every reader here checks each file before handing it on, so that every command
inherits the checks: a file that is damaged, of the wrong shape, of another run or out of step with `metrics.jsonl`
is one line (`BadValue`) naming it and what to do. Files of itra up to 0.3.0 carry no identity: their summary is
checked by its run's name and epoch, their checkpoint by its epoch, against `metrics.jsonl`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from itra import checkpoint
from itra.checkpoint import PartMismatch, Stateful
from itra.config import FIELD_ORDER, LOCATION_FIELDS, TrainConfig
from itra.resolve import ResolvedConfig, resolve
from itra.errors import BadValue, CannotWrite, MissingFile, first_line

RUN_FORMAT = 2  # in config.json; runs written before 0.2 (no format) were not reproducible from their seed
CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"
FAILURES = ("failed", "collapsed")  # the statuses of a run that ended without finishing
STATUSES = ("finished", *FAILURES)
TEST_METRICS = ("test_accuracy", "test_cross_entropy", "test_ece")  # in every metrics row and finished summary
TEXT_FIELDS = ("name", "status", "reason", "device")  # a summary's fields that are not numbers
TIMING_FIELDS = ("elapsed_s",)  # not part of what a run computes: left out of its rows' digest


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, so that `json.dumps` writes valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


# ---------------------------------------------------------------- writing
@contextlib.contextmanager
def _writes(path: Path, temporary: Path | None = None) -> Iterator[None]:
    """An OSError while writing `path` (a full disk, a read-only folder) as one line naming it; `temporary` removed."""
    try:
        yield
    except OSError as error:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
        raise CannotWrite(f"{path}: cannot be written ({first_line(error)}): free some space (or make the folder "
                          "writable), or choose another --out") from None


def write_atomic(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to `path`, atomically and durably: into `path.tmp`, synced to disk, renamed over `path`,
    and the rename synced (the folder's entry). A kill or a crash leaves the old file or the new one; a failed write
    (`CannotWrite`) leaves the old one and no `.tmp`."""
    temporary = path.with_name(path.name + ".tmp")
    with _writes(path, temporary):
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def write_json(path: Path, value: Any) -> None:
    """Write strict JSON atomically and durably (`write_atomic`)."""
    text = json.dumps(strict_json(value), indent=2, allow_nan=False) + "\n"
    write_atomic(path, text.encode())


# ---------------------------------------------------------------- reading: one check per file kind
def _remedy(path: Path) -> str:
    """What to do about a damaged or foreign run file `path`."""
    return {CONFIG: f"fix it, or delete {path.parent} to train the run afresh",
            METRICS: f"restore it, or delete {path.parent} to train the run afresh",
            CHECKPOINT: "delete it to train the run again from the start",
            SUMMARY: "delete it, and the same command resumes the run from its checkpoint (or trains it again)",
            }.get(path.name, "delete it, and it is written again")


def _damaged(path: Path, problem: str) -> BadValue:
    return BadValue(f"{path}: {problem}; {_remedy(path)}")


def _shown(value: Any) -> str:
    """`value` as a message quotes it: short, on one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise _damaged(path, "not text (it holds bytes that are not UTF-8)") from None
    except OSError as error:
        raise _damaged(path, f"cannot be read ({first_line(error)})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise _damaged(path, f"not valid JSON ({error})") from None


def is_number(value: Any) -> bool:
    """A finite number: itra writes a non-finite one as null (strict JSON), so a NaN or Infinity token is damage."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_numeric(value: Any) -> bool:
    """A number, null (a non-finite number) or a list of them (e.g. compactness: [[step, value], ...])."""
    return value is None or is_number(value) or (isinstance(value, list) and all(map(_is_numeric, value)))


def write_config(run_dir: Path, config: TrainConfig) -> None:
    write_json(run_dir / CONFIG, {**config.to_dict(), "run_format": RUN_FORMAT})


@contextlib.contextmanager
def writing(run_dir: Path, resume: bool) -> Iterator[None]:
    """Hold `run_dir` (made if missing) for one writer: a second process that trains the same run into it at the same
    time is refused in one line instead of interleaving its files (an exclusive `flock` on the directory, released
    when the writer ends or dies). A fresh start (`resume` False) into a directory that another process has filled
    meanwhile is refused too, so nothing it wrote is overwritten."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BadValue(f"{run_dir} is being trained by another itra process: wait for it to end (then the same "
                             "command reuses or resumes the run), or train into another --out") from None
        if not resume and any((run_dir / name).exists() for name in (CHECKPOINT, SUMMARY)):
            raise BadValue(f"{run_dir} was written by another itra process while this one started: run the command "
                             "again to reuse or resume it")
        yield
    finally:
        os.close(handle)


def read_config(run_dir: Path) -> ResolvedConfig:
    """The run's config, resolved (`itra.resolve`: a directory of an older itra, which kept the defaults of fields
    the run did not read, reads as the same run; a field it did not have takes its default); a directory written by an
    itra older than 0.2 is a clear error, and so is a file that is not a JSON object of valid config fields."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise MissingFile(f"{path}: not a run directory (no {CONFIG})")
    values = read_json(path)
    if not isinstance(values, dict):
        raise _damaged(path, f"holds a {type(values).__name__}, not a JSON object of config fields")
    if values.pop("run_format", None) != RUN_FORMAT:
        raise BadValue(f"{path.parent}: a run written by itra before 0.2, whose runs were not reproducible from "
                         "their seed and whose names left out some fields; run it again into another --out")
    return _parse_config(path, values)


def _parse_config(path: Path, values: dict[str, Any]) -> ResolvedConfig:
    """`values` (of `config.json`, or of a checkpoint's or summary's identity) as a resolved config. A field that is
    null although the run reads it (a run's files hold the config in effect, `itra.resolve`) is refused: it would
    read as no value where the run used one."""
    try:
        config = resolve(TrainConfig.from_dict(values))
        unset = {field.name: field.default for field in dataclasses.fields(config) if getattr(config, field.name) is None}
        filled = resolve(dataclasses.replace(config, **unset))
        read = [name for name in FIELD_ORDER if getattr(filled, name) != getattr(config, name)]
    except (ValueError, TypeError) as error:
        raise _damaged(path, first_line(error)) from None
    if read:
        raise _damaged(path, f"{', '.join(read)} {'is' if len(read) == 1 else 'are'} null, but the run reads "
                             f"{'it' if len(read) == 1 else 'them'}")
    return config


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row as one line (flushed and synced, so a kill can tear at most this line)."""
    path = run_dir / METRICS
    with _writes(path), open(path, "a") as log:
        log.write(json.dumps(strict_json(row), allow_nan=False) + "\n")
        log.flush()
        os.fsync(log.fileno())


def read_metrics(run_dir: Path, warn: bool = True) -> list[dict[str, Any]]:
    """The rows of `metrics.jsonl`, one per finished epoch, in order: line n is a JSON object of epoch n with the
    test metrics, every value a number, null or a list of them. A torn last line (a kill while writing it, so not
    JSON) is dropped, with a note on stderr when `warn`; any other bad line is an error naming it."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    lines = [line for line in _read_text(path).splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number < len(lines):
                raise BadValue(f"{path}, line {number}: not valid JSON ({error}); {_remedy(path)}") from None
            if warn:
                print(f"note: {path}: dropped a torn last line (the run was killed while writing it)", file=sys.stderr)
            break
        problem = _row_problem(row, number)
        if problem:
            raise BadValue(f"{path}, line {number}: {problem}; {_remedy(path)}")
        rows.append(row)
    return rows


def _row_problem(row: Any, epoch: int) -> str | None:
    """What is wrong with `row` as the metrics row of `epoch`, or None."""
    if not isinstance(row, dict):
        return f"a {type(row).__name__} ({_shown(row)}), not a row of metrics (a JSON object)"
    if not _is_count(row.get("epoch")) or row["epoch"] != epoch:
        return f"epoch {_shown(row.get('epoch'))} where epoch {epoch} was expected"
    missing = [key for key in TEST_METRICS if key not in row]
    if missing:
        return f"no {', '.join(missing)}"
    wrong = next((key for key, value in row.items() if not _is_numeric(value)), None)
    return None if wrong is None else f"{wrong} is {_shown(row[wrong])}, not a number"


def rewrite_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Replace `metrics.jsonl` by `rows` (on resume: the epochs the checkpoint holds), atomically and durably."""
    text = "".join(json.dumps(strict_json(row), allow_nan=False) + "\n" for row in rows)
    write_atomic(run_dir / METRICS, text.encode())


# ---------------------------------------------------------------- identity: whose a checkpoint or summary is
def identity(config: TrainConfig, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What a checkpoint or summary of `config`'s run after `rows` (its metrics rows so far) is of: the fields that make
    the run (`TrainConfig.same_run`: not where it runs), how many rows it follows, and their digest (timings aside:
    a resumed run's rows equal an uninterrupted one's)."""
    fields = {name: value for name, value in config.to_dict().items() if name not in LOCATION_FIELDS}
    return {"config": fields, "rows": len(rows), "digest": _digest(rows)}


def _digest(rows: Sequence[dict[str, Any]]) -> str:
    timeless = [{key: value for key, value in row.items() if key not in TIMING_FIELDS} for row in rows]
    return hashlib.sha256(json.dumps(strict_json(timeless), sort_keys=True, allow_nan=False).encode()).hexdigest()


def _check_identity(path: Path, found: Any, config: TrainConfig, rows: list[dict[str, Any]], epochs: int,
                    exact: bool) -> None:
    """That the file at `path` (a checkpoint or a summary after `epochs` epochs, whose identity is `found`: None in a
    file of itra up to 0.3.0) is of `config`'s run and follows the first `epochs` rows of `metrics.jsonl`, all of them
    when `exact` (a summary; a kill between a metrics line and its checkpoint leaves one row more)."""
    metrics = path.parent / METRICS
    if epochs > len(rows):
        lost = ", ".join(map(str, range(len(rows) + 1, epochs + 1)))
        what = "checkpoint has trained" if path.name == CHECKPOINT else f"{path.name} says were trained"
        raise BadValue(f"{metrics} lacks the rows of epochs {lost} that its {what}: restore the file, or remove "
                         f"{path.parent} to train the run afresh")
    if exact and len(rows) > epochs:
        raise _damaged(path, f"it ended after epoch {epochs}, but {metrics} holds {len(rows)} rows: it is not the "
                             "summary of these rows")
    if found is None:
        return
    if not (isinstance(found, dict) and isinstance(found.get("config"), dict) and found.get("rows") == epochs
            and isinstance(found.get("digest"), str)):
        raise _damaged(path, "its identity (the run and the epochs it is of) is damaged")
    differences = _parse_config(path, found["config"]).differences(config)
    if differences:
        raise BadValue(f"{path} is of another run than {config.name}, the run of {path.parent / CONFIG} or of the "
                         f"command ({'; '.join(differences[:3])}): one of them was copied from elsewhere or edited; "
                         f"{_remedy(path)}")
    if found["digest"] != _digest(rows[:epochs]):
        raise _damaged(path, f"it follows other metrics rows than the {epochs} of {metrics}, which were replaced or "
                             "edited")


# ---------------------------------------------------------------- checkpoint
def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """`torch.save`, atomically and durably (`write_atomic`): a kill never leaves half a checkpoint. It is serialised
    in memory first: torch's own writer turns a failed write (a full disk) into a RuntimeError like any other."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(run_dir / CHECKPOINT, buffer.getbuffer())


def load_checkpoint(run_dir: Path, config: TrainConfig | None = None,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint of the run of `config` (default: the run directory's `config.json`) in `run_dir`, in this
    version's layout (`checkpoint.checked`; tensors only: `weights_only=True`), checked to be of that run and in
    step with `metrics.jsonl` (`identity`); a checkpoint of itra up to 0.3.0, which carries no identity, is checked
    by its epoch alone (its rows must be there), and its weights by the model they load into (`restore`). A file
    that is damaged, not a checkpoint, of another run or out of step is one line naming it."""
    path = Path(run_dir) / CHECKPOINT
    try:
        loaded = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise MissingFile(f"{path}: no checkpoint to resume from") from None
    except Exception as error:  # what torch.load raises on bytes that are no checkpoint: RuntimeError, EOFError,
        # UnpicklingError, UnicodeDecodeError, IndexError, KeyError, ValueError, ... (an OSError: unreadable)
        raise _damaged(path, f"cannot be read, it is truncated or damaged ({first_line(error)})") from None
    try:
        saved = checkpoint.checked(loaded)
    except BadValue as error:  # of a newer itra
        raise BadValue(f"{path}: {error}") from None
    except ValueError as error:
        raise _damaged(path, f"not a checkpoint of itra ({error})") from None
    config = read_config(run_dir) if config is None else config
    _check_identity(path, saved.get("identity"), config, read_metrics(run_dir, warn=False), saved["epoch"], exact=False)
    return saved


def restore(run_dir: Path, saved: dict[str, Any], config: TrainConfig, shared: Mapping[str, Stateful],
            own: Mapping[str, Stateful], rank: int = 0) -> None:
    """Load the checkpoint `saved` (`load_checkpoint`) of `run_dir` into the parts (`checkpoint.restore`); a state
    that does not fit its part (weights of another model than `config.model`) is one line naming the file."""
    try:
        checkpoint.restore(saved, shared, own, rank)
    except PartMismatch as error:  # a checkpoint of another model (of an older itra, or copied in without identity)
        what = (f"weights of another model than {config.model}" if error.part == "model"
                else f"a {error.part} state that does not fit this run")
        raise BadValue(f"{Path(run_dir) / CHECKPOINT} holds {what} ({error.reason}): {_remedy(Path(CHECKPOINT))}") \
            from None


def load_model(run_dir: Path, config: TrainConfig, model: torch.nn.Module) -> dict[str, Any]:
    """Load the weights of the run's checkpoint (`load_checkpoint`, `restore`) into `model`, built for `config`;
    returns the checkpoint."""
    saved = load_checkpoint(run_dir, config)
    restore(run_dir, saved, config, {"model": model}, {})
    return saved


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT).exists()


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(run_dir / SUMMARY, summary)


def read_summary(run_dir: Path, config: TrainConfig | None = None) -> dict[str, Any] | None:
    """The summary of an ended run (`"status"`: "finished", "failed" or "collapsed"), None while it has not ended;
    checked to be a summary (its name, status and epoch; a finished run's test metrics, a failed run's reason), of the
    run of `config` (default: the run directory's `config.json`) and of every row of `metrics.jsonl` (`identity`; a
    summary of itra up to 0.3.0: its name and epoch)."""
    path = Path(run_dir) / SUMMARY
    if not path.exists():
        return None
    summary = read_json(path)
    problem = _summary_problem(summary)
    if problem:
        raise _damaged(path, problem)
    config = read_config(run_dir) if config is None else config
    if summary.get("identity") is None and summary["name"] != config.name:
        raise BadValue(f"{path} is of another run ({summary['name']}) than {config.name}, the run of "
                         f"{path.parent / CONFIG} or of the command: one of them was copied from elsewhere or edited; "
                         f"{_remedy(path)}")
    _check_identity(path, summary.get("identity"), config, read_metrics(run_dir, warn=False), summary["epoch"],
                    exact=True)
    return summary


def _summary_problem(summary: Any) -> str | None:
    """What is wrong with `summary` as a run's summary, or None."""
    if not isinstance(summary, dict):
        return f"holds a {type(summary).__name__} ({_shown(summary)}), not a run's summary (a JSON object)"
    required = ["name", "status", "epoch", *(TEST_METRICS if summary.get("status") == "finished" else ["reason"])]
    missing = [key for key in required if key not in summary]
    if missing:
        return f"no {', '.join(missing)}"
    if summary["status"] not in STATUSES:
        return f"status {_shown(summary['status'])} is none of {', '.join(STATUSES)}"
    if not (_is_count(summary["epoch"]) and summary["epoch"] >= 0):
        return f"epoch {_shown(summary['epoch'])} is not a number of epochs"
    wrong = next((key for key, value in summary.items()
                  if not _summary_field_fits(key, value, summary["status"] == "finished")), None)
    if wrong is not None:
        return f"{wrong} is {_shown(summary[wrong])}, not {'text' if wrong in TEXT_FIELDS else 'a number'}"
    return None


def _summary_field_fits(key: str, value: Any, finished: bool) -> bool:
    if key in TEXT_FIELDS:
        return isinstance(value, str)
    if key == "identity":
        return True  # checked against the run's files by `_check_identity`
    if key == "early_stopping":
        return isinstance(value, dict) and all(map(_is_numeric, value.values()))
    if key in TEST_METRICS and finished:
        return is_number(value)
    return _is_numeric(value)


def is_failed(summary: dict[str, Any]) -> bool:
    """Whether the run ended without finishing: "failed" (diverged) or "collapsed" (features collapsed)."""
    return summary.get("status") in FAILURES
