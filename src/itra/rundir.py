"""The run directory: `config.json`, `metrics.jsonl`, `checkpoint.pt` and `summary.json`.

Every file is written so that a kill at any moment leaves it readable: JSON files and the checkpoint
go to a temporary file that is renamed over the old one, and `metrics.jsonl` only ever grows by whole
lines, so at worst its last line is torn, which `read_metrics` drops (the checkpoint is the truth).
No file holds NaN or infinity: they are written as `null` (strict JSON).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any, Iterator

import torch

from itra.config import TrainConfig
from itra.resolve import resolve
from itra.errors import BadValue, MissingFile

RUN_FORMAT = 2  # in config.json; runs written before 0.2 (no format) were not reproducible from their seed
CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"
FAILURES = ("failed", "collapsed")  # the statuses of a run that ended without finishing


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float replaced by None, so that `json.dumps` writes valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def write_json(path: Path, value: Any) -> None:
    """Write strict JSON atomically (a temporary file, then a rename)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(strict_json(value), indent=2, allow_nan=False) + "\n")
    os.replace(temporary, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BadValue(f"{path}: not valid JSON ({error}); remove the run directory to start the run afresh") from None


def write_config(run_dir: Path, config: TrainConfig) -> None:
    write_json(run_dir / CONFIG, {**dataclasses.asdict(config), "run_format": RUN_FORMAT})


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


def read_config(run_dir: Path) -> TrainConfig:
    """The run's config, resolved (`itra.resolve`: a directory of an older itra, which kept the defaults of fields
    the run did not read, reads as the same run); a directory written by an itra older than 0.2 is a clear error."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise MissingFile(f"{path}: not a run directory (no {CONFIG})")
    values = read_json(path)
    if values.pop("run_format", None) != RUN_FORMAT:
        raise BadValue(f"{path.parent}: a run written by itra before 0.2, whose runs were not reproducible from "
                         "their seed and whose names left out some fields; run it again into another --out")
    try:
        return resolve(TrainConfig.from_dict(values))
    except ValueError as error:
        raise BadValue(f"{path}: {error}; fix the file, or remove {path.parent} to train the run afresh") from None


def append_metrics(run_dir: Path, row: dict[str, Any]) -> None:
    """Append one epoch's row as one line (flushed and synced, so a kill can tear at most this line)."""
    with open(run_dir / METRICS, "a") as log:
        log.write(json.dumps(strict_json(row), allow_nan=False) + "\n")
        log.flush()
        os.fsync(log.fileno())


def read_metrics(run_dir: Path, warn: bool = True) -> list[dict[str, Any]]:
    """The rows of `metrics.jsonl`, one per finished epoch. A torn last line (a kill while writing it)
    is dropped, with a note on stderr when `warn`; a bad line before the last is an error naming it."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number < len(lines):
                raise BadValue(f"{path}, line {number}: not valid JSON ({error}); the file is damaged") from None
            if warn:
                print(f"note: {path}: dropped a torn last line (the run was killed while writing it)", file=sys.stderr)
    return rows


def rewrite_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Replace `metrics.jsonl` by `rows` (on resume: the epochs the checkpoint holds)."""
    temporary = run_dir / (METRICS + ".tmp")
    temporary.write_text("".join(json.dumps(strict_json(row), allow_nan=False) + "\n" for row in rows))
    os.replace(temporary, run_dir / METRICS)


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """`torch.save` to a temporary file, then rename: a kill never leaves half a checkpoint."""
    temporary = run_dir / (CHECKPOINT + ".tmp")
    torch.save(state, temporary)
    os.replace(temporary, run_dir / CHECKPOINT)


def load_checkpoint(run_dir: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The checkpoint's state (tensors only: `weights_only=True`); a damaged file is a clear error."""
    path = Path(run_dir) / CHECKPOINT
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise MissingFile(f"{path}: no checkpoint to resume from") from None
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise BadValue(f"{path}: cannot be read, it is truncated or damaged ({str(error).splitlines()[0]}); "
                         "delete it to train the run again from the start") from None


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT).exists()


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_json(run_dir / SUMMARY, summary)


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The summary of an ended run (`"status"`: "finished", "failed" or "collapsed"), None while it has not ended."""
    path = Path(run_dir) / SUMMARY
    return read_json(path) if path.exists() else None


def is_failed(summary: dict[str, Any]) -> bool:
    """Whether the run ended without finishing: "failed" (diverged) or "collapsed" (features collapsed)."""
    return summary.get("status") in FAILURES
