"""Runs by config: one directory per `TrainConfig`, reused when it has ended, resumed when it was interrupted."""
from __future__ import annotations

import itertools
import time
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import TensorDataset
from tqdm import tqdm

from itra import rundir
from itra.config import TrainConfig
from itra.device import check_machine
from itra.exits import EXIT_MODES
from itra.experiments.launchers import LAUNCHERS, InProcess, Launch, torch_threads
from itra.methods import METHODS
from itra.pairing import PAIRINGS
from itra.resolve import ResolvedConfig, resolve
from itra.data import Splits
from itra.data.registry import image_stem, is_text_dataset, load_dataset
from itra.data.text import TextSplits
from itra.distributed import setup
from itra.models import Classifier
from itra.models.libraries import build_library_model, check_library_model, library_of, pretrained_file
from itra.models.registry import build_image_model
from itra.train import fit
from itra.errors import BadValue, MissingFile


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: its finished epochs are saved in `run_dir`."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def load_splits(config: TrainConfig) -> Splits:
    """The config's dataset, ready to train: a text dataset is tokenised by its model's own tokenizer,
    truncated at `config.max_length`."""
    data = load_dataset(config.dataset, config.data_dir)
    if not isinstance(data, TextSplits):
        return data
    from itra.models.text import load_tokenizer, tokenize

    tokenizer = load_tokenizer(config.model)

    def encode(texts: tuple[str, ...], labels: torch.Tensor) -> TensorDataset:
        return TensorDataset(*tokenize(texts, tokenizer, config.max_length), labels)

    return Splits(data.name, encode(data.train_texts, data.train_labels), encode(data.test_texts, data.test_labels),
                  data.num_classes, data.class_names)


def build_model(config: TrainConfig, splits: Splits) -> Classifier:
    """The config's model for `splits` (from `load_splits`), its initial weights drawn from `config.seed`;
    a text model starts from its pretrained weights (only its heads are drawn); a timm or torchvision model
    (`timm:<name>`, `torchvision:<name>`) is built for the dataset's image shape, from scratch or `--pretrained` (`itra.models.libraries`). With `--exits separate` it has
    a head per exit (`Classifier.add_exit_heads`), drawn after the model's own weights."""
    torch.manual_seed(config.seed)
    if is_text_dataset(config.dataset):
        from itra.models.text import load_text_classifier

        model = load_text_classifier(config.model, splits.num_classes)
    elif library_of(config.model):
        model = build_library_model(config.model, splits.num_classes, splits.image_shape,
                                    config.pretrained)
    else:
        model = build_image_model(config.model, splits.num_classes, splits.image_shape[0],
                                  image_stem(config.dataset))
    if EXIT_MODES[config.exits].own_heads:
        model.add_exit_heads()
    return model


def check_model_files(config: TrainConfig) -> None:
    """What `--model` needs on this machine, before any data is loaded: a text model given as a path is a
    directory; a timm or torchvision model imports and exists, and with `--pretrained` its weights are on disk.
    Training checks it; reading a run back (`rundir.read_config`, `itra report`) does not, so a run whose encoder
    has moved still reads."""
    if is_text_dataset(config.dataset) and config.model.startswith(("/", ".", "~")) \
            and not Path(config.model).expanduser().is_dir():  # a path, not a Hub name: it must be there
        raise MissingFile(f"--model {config.model}: no such directory; give the directory of a Hugging Face "
                          "encoder (with its config.json), its Hub name (bert-base-uncased, ...) or minilm")
    if config.pretrained and not library_of(config.model):
        raise BadValue(f"--pretrained is for --model timm:<name> or torchvision:<name>, not {config.model} (itra's own "
                         "image models train from scratch; a text model always starts from its pretrained weights)")
    if library_of(config.model):
        check_library_model(config.model)
        if config.pretrained:
            pretrained_file(config.model)


def run(config: TrainConfig, out: Path, splits: Splits | None = None, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Train `config` into `out/config.name`, or reuse it: an ended run (finished or failed) is read
    back, an interrupted one resumed from its checkpoint. A directory that holds another config is an
    error, never overwritten. The config is resolved (`itra.resolve`), and the machine (device, compiler) and
    the model's files (`check_model_files`) are checked, before any data is loaded.
    Under torchrun every rank calls it; rank 0 reads the directory and tells the others what it found."""
    config = resolve(config)
    check_machine(config.device, config.precision, config.compile)
    check_model_files(config)
    run_dir = Path(out) / config.name
    check_run_dir(run_dir)
    summary, started = setup().on_main(find_run, run_dir, config)
    if summary is not None:
        return run_dir, summary
    return run_dir, _build_and_fit(config, splits, run_dir, resume=started, progress=progress)


class LoadedSplits:
    """`load_splits` once per data source: the dataset, its directory and, for a text dataset, the model and length
    it is tokenised for (the runs of a sweep or a study share it; image models of one dataset share its images)."""

    def __init__(self) -> None:
        self._by_source: dict[tuple[Any, ...], Splits] = {}

    def __call__(self, config: TrainConfig) -> Splits:
        tokenised = (config.model, config.max_length) if is_text_dataset(config.dataset) else ()
        source = (config.dataset, config.data_dir, *tokenised)
        if source not in self._by_source:
            self._by_source[source] = load_splits(config)
        return self._by_source[source]


def train_run(config: TrainConfig, out: Path, threads: int, progress: bool = False,
              splits: Callable[[TrainConfig], Splits] | None = None) -> tuple[Path, dict[str, Any]]:
    """`run` with `threads` intra-op threads: a launcher's task (`itra.experiments.launchers`). In a worker process
    (`splits` None) the worker's own `LoadedSplits` gives the data, once per source for all the runs it trains."""
    with torch_threads(threads):
        return run(config, out, (_worker_splits if splits is None else splits)(config), progress)


_worker_splits = LoadedSplits()  # each worker process's own


def run_all(configs: Sequence[TrainConfig], out: Path, progress: bool = True,
            splits: Callable[[TrainConfig], Splits] | None = None,
            launch: Launch = Launch()) -> Iterator[tuple[TrainConfig, Path, dict[str, Any]]]:
    """`run` (or reuse) every config into `out`, handed to `launch`'s launcher (by default one after another in this
    process), and yield (config, run directory, summary) in the order of `configs`, whatever order they end in. Every
    run trains with `launch.threads` threads. With `progress`, a line per run as it starts and as it ends, and a bar for
    the study (the per-step bars only for runs in this process). A run's error stops the runs in flight (their finished
    epochs are saved) and is raised; so is Ctrl-C. `splits` gives each config its data in this process (a
    `LoadedSplits`, shared with the caller that reads the data again afterwards); by default each data source is loaded
    once; worker processes load their own."""
    check_run_dirs(configs, out)
    check_machines(configs)
    executor, jobs = LAUNCHERS[launch.launcher](launch, configs)
    in_process = isinstance(executor, InProcess)
    shared = (LoadedSplits() if splits is None else splits) if in_process else None
    progress = progress and setup().is_main  # under torchrun, rank 0 tells
    bar = tqdm(total=len(configs), desc="runs", unit="run", disable=not progress, dynamic_ncols=True)
    order = range(len(configs)) if jobs <= 1 else longest_first(configs, out)
    waiting, running, ended, given = ((index, configs[index]) for index in order), {}, {}, 0

    def note(index: int, what: str) -> None:
        if progress:
            bar.write(f"[{index + 1}/{len(configs)}] {configs[index].name}: {what}")

    with executor, bar:
        try:
            while True:
                for index, config in itertools.islice(waiting, jobs - len(running)):
                    note(index, "reused" if (Path(out) / config.name / rundir.SUMMARY).exists() else "started")
                    future = executor.submit(train_run, config, out, launch.threads, progress and in_process, shared)
                    running[future] = (index, time.monotonic())
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=lambda future: running[future][0]):
                    index, started = running.pop(future)
                    ended[index] = future.result()
                    note(index, f"{ended[index][1]['status']} in {duration(time.monotonic() - started)}")
                    bar.update()
                while given in ended:
                    yield configs[given], *ended.pop(given)
                    given += 1
        except BaseException:
            executor.shutdown(cancel_futures=True)
            raise


def longest_first(configs: Sequence[TrainConfig], out: Path) -> list[int]:
    """The order in which N workers take a study's runs: the ended ones first (they are read back at once), then the
    longest first (a study ends sooner when no long run starts last: on 2 workers, 2 CE runs then an ITRA-c run of
    twice their cost take 3 CE runs' time, the ITRA-c run first 2). A run's cost: its epochs x training
    images x the passes of a step (2 where the method draws an S2, `PairingSpec.draws_second_batch`); the runs of a
    study share their dataset, so an unset subset counts as the largest."""
    def cost(config: TrainConfig) -> tuple[bool, float]:
        passes = 1 + (METHODS[config.method].needs_second_batch and PAIRINGS[config.pairing].draws_second_batch)
        ended = (Path(out) / config.name / rundir.SUMMARY).exists()
        return ended, config.epochs * (config.train_subset or float("inf")) * passes

    return sorted(range(len(configs)), key=lambda index: cost(configs[index]), reverse=True)


def duration(seconds: float) -> str:
    """`12s`, `4m12s`, `2h05m`."""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def check_run_dir(run_dir: Path) -> None:
    """A run's directory is a folder, or not there yet: a file in its place is one line."""
    if run_dir.exists() and not run_dir.is_dir():
        raise BadValue(f"{run_dir} is a file, not a run directory: move it away, or choose another --out")


def check_run_dirs(configs: Sequence[TrainConfig], out: Path) -> None:
    """`check_run_dir` for every config's directory in `out`: before any data of a sweep or study is loaded."""
    for config in configs:
        check_run_dir(Path(out) / resolve(config).name)


def check_machines(configs: Sequence[TrainConfig]) -> None:
    """What `run` checks of each config before its data loads, the machine (`check_machine`) and the model's files
    (`check_model_files`), for every config of a sweep or study before any run starts (each distinct check once): a
    bad --device is one line at once, not after the first runs have started."""
    for device, precision, compile in dict.fromkeys((c.device, c.precision, c.compile) for c in configs):
        check_machine(device, precision, compile)
    for config in {(c.model, c.dataset, c.pretrained): c for c in configs}.values():
        check_model_files(config)


def find_run(run_dir: Path, config: TrainConfig) -> tuple[dict[str, Any] | None, bool]:
    """What `run_dir` holds: the summary of an ended run (or None; checked to be of this run, `rundir.read_summary`),
    and whether it has a checkpoint to resume from; a directory that holds another config than `config` is an error."""
    if (run_dir / rundir.CONFIG).exists():
        stored = rundir.read_config(run_dir)
        if not stored.same_run(config):  # e.g. a run of an earlier default, whose name now says more
            raise BadValue(f"{run_dir / rundir.CONFIG} holds a run with another config "
                             f"({', '.join(stored.differences(config))}); "
                             f"its name today is {stored.name}: rename it to that, or choose another --out")
    return rundir.read_summary(run_dir, config), rundir.has_checkpoint(run_dir)


def resume(run_dir: Path, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Continue the run in `run_dir` (`itra train --resume`); an ended run is read back. A run trained on
    N processes resumes on N processes (torchrun) only."""
    run_dir = Path(run_dir)
    dist = setup()
    config = dist.on_main(rundir.read_config, run_dir)
    check_machine(config.device, config.precision, config.compile)
    check_model_files(config)
    summary, started = dist.on_main(find_run, run_dir, config)
    if summary is not None:
        return run_dir, summary
    return run_dir, _build_and_fit(config, None, run_dir, resume=started, progress=progress)


def _build_and_fit(config: ResolvedConfig, splits: Splits | None, run_dir: Path, resume: bool, progress: bool) -> dict[str, Any]:
    """`train.fit` of `config` on `splits` (loaded here when None) with the model it names, built here."""
    splits = splits if splits is not None else load_splits(config)
    try:
        return fit(config, splits, build_model(config, splits), run_dir, resume=resume, progress=progress)
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir) from None
