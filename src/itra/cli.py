"""The `itra` command line.

    itra reproduce fashion-mnist                      # the paper's Table 1 on real Fashion-MNIST, all methods
    itra train --dataset fashion-mnist --model cnn --method itra-c --lam 0.6 --epochs 15 --seed 0 --out runs/
    itra train --resume runs/<run-name>               # continue a run that was killed
    itra sweep --method itra-c --lam 0.1,0.2,0.4,0.6,0.8,1.0 --seeds 3   # a grid; reuses finished runs
    itra report runs/ --out report/                   # tables and figures read back from run directories
    itra similarity runs/<run> --out similarity/      # layer-wise cosine and CKA, the head's accuracy after every layer
    itra ood runs/ --out ood/                         # OOD detection and retrieval of trained runs (their checkpoints)
    itra reproduce layerwise-fmnist                   # standard vs aligned vs separate heads, CE and ITRA-c, layer by layer
    python -m itra ...                                # the same commands
    torchrun --standalone --nproc-per-node 2 -m itra train ...   # one run on 2 processes (README, "Training on many GPUs")

Exit status: 0 done; 1 a run failed (diverged or collapsed: its run directory says why); 2 bad input, missing data,
a missing optional package or no network (one line on stderr); 130 interrupted (finished epochs are kept; run
again to continue). Under torchrun, results, failures and interruptions are printed by rank 0 alone; an error
is printed by each rank that meets it, naming its rank.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import Sequence

from itra import __version__
from itra.checks import COUNT_LIMIT
from itra.config import FIELD_ORDER, GROUPS, LAUNCH_FIELDS, TrainConfig
from itra.distributed import check_launch, launch_integer, launched_world_size, shutdown
from itra.experiments.launchers import LAUNCHERS, Launch
from itra.experiments.presets import LAYERWISE_PRESETS, PRESETS
from itra.experiments.runs import RunInterrupted
from itra.experiments.table import count_failed
from itra.rundir import is_failed
from itra.errors import BadValue, UserError
from itra.notes import note
from itra.ood import KNN_K


def _flag_type(annotation: object) -> type:
    """int for `int` and `Optional[int]`, and so on."""
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    return arguments[0] if arguments else annotation  # type: ignore[return-value]


def _positive_int(text: str) -> int:
    """An integer >= 1 (argparse names the flag in its one-line error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, but got {value}")
    if value >= COUNT_LIMIT:
        raise argparse.ArgumentTypeError(f"expected an integer below 2**63, but got {value}")
    return value


def _path(text: str) -> Path:
    """A path that names something: an empty one (an unset shell variable, `--out "$OUT"`) is refused, not read as
    the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, but got an empty string")
    return Path(text)


_path.__name__ = "path"  # what argparse names in its error


def _list_of(kind: type):
    def parse(text: str) -> list:
        values = [kind(item) for item in text.split(",") if item.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r} holds no value: give one or more, comma-separated")
        return values

    parse.__name__ = f"comma-separated {kind.__name__}"  # what argparse names in its error
    return parse


def add_config_flags(parser: argparse.ArgumentParser, lists: bool = False, skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field (`lam` -> `--lam`, `batch_size` -> `--batch-size`), in the config's groups
    (`GROUPS`: data, model, method, ... as `--help` sections); with `lists`
    each takes comma-separated values (a sweep's grid). A bool field is a switch (`--tensorboard`),
    the same for every run of a grid. Without `lists` a flag not given is absent from the parsed namespace (its
    field's default is `TrainConfig`'s), so that a flag given at its default value is still known to be given."""
    hints = typing.get_type_hints(TrainConfig)
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    for title, what, names in GROUPS:
        group = parser.add_argument_group(title, what)
        for field in (fields[name] for name in names if name not in skip + LAUNCH_FIELDS):
            flag, kind = "--" + field.name.replace("_", "-"), _flag_type(hints[field.name])
            default = [field.default] if lists else argparse.SUPPRESS
            if kind is bool:
                switched = [not field.default] if lists else not field.default
                group.add_argument(flag, action="store_const", const=switched, default=default,
                                   help=field.metadata["help"])
            else:
                group.add_argument(flag, type=_list_of(kind) if lists else kind, default=default,
                                   help=f"{field.metadata['help']} (default: {field.default})")


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    """How a command that trains several runs trains them (`itra.experiments.launchers`)."""
    parser.add_argument("--jobs", type=_positive_int, help="runs trained at once (at most one per run), each in a worker "
                        "process with --threads-per-run threads, so that N does not change a run's numbers; 1: in this "
                        "process, with its step bars (default: one per GPU, else one per core over --threads-per-run: "
                        "on 2 idle cores, 2 runs at once trained a 12-run fashion-mnist study 1.7x faster than one at a "
                        "time, benchmarks/bench_jobs.py; on a busy machine, fewer may be faster)")
    parser.add_argument("--threads-per-run", type=_positive_int, help="CPU threads of each run, whatever --jobs (default: "
                        "1 on a machine without GPUs; with GPUs, the cores shared out between them); itra train uses "
                        "torch's default (OMP_NUM_THREADS=1 itra train ... trains the run a sweep trains)")
    parser.add_argument("--launcher", choices=list(LAUNCHERS), default="local", help="local: worker processes on this "
                        "machine; ray: each run a Ray task with the CPUs and GPU it needs, on the cluster at --address "
                        "(--out on a file system every node sees; pip install 'itra[ray]') (default: local)")
    parser.add_argument("--address", help="with --launcher ray: the cluster's head, host:port (ray start --head prints "
                        "it), or auto: the cluster ray start started on this machine (default: a local Ray instance)")


def _launch(args: argparse.Namespace) -> Launch:
    return Launch(args.launcher, args.jobs, args.threads_per_run, args.address)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="itra", allow_abbrev=False,
        description="In-Training Representation Alignment: train classifiers with a class-conditional "
        "MMD matching loss between two mini-batches, and reproduce the paper's studies.",
    )
    parser.add_argument("--version", action="version", version=f"itra {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # No abbreviations: `itra sweep --seed 1` must not be taken for `--seeds 1`.
    add_parser = functools.partial(commands.add_parser, allow_abbrev=False)

    train = add_parser("train", help="train one model with one method", description="Train one run.")
    add_config_flags(train)
    train.add_argument("--out", type=_path, default=Path("runs"), help="parent of the run directory (default: runs)")
    train.add_argument("--resume", type=_path, metavar="RUN_DIR", help="continue the run in RUN_DIR with its own config (no config flag may be given with it)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")

    sweep = add_parser("sweep", help="a grid of runs (comma-separated values)",
                                description="Run every combination of the comma-separated flag values, for --seeds seeds.")
    add_config_flags(sweep, lists=True, skip=("seed",))
    sweep.add_argument("--seeds", type=_positive_int, default=3, help="seeds 0..N-1 for every combination (default: 3)")
    sweep.add_argument("--out", type=_path, default=Path("runs"), help="where the runs go (default: runs)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    add_launch_flags(sweep)

    report = add_parser("report", help="tables and figures from run directories",
                                 description="Write report.md and PNG figures from finished run directories.")
    report.add_argument("runs", nargs="+", type=_path, metavar="RUN_DIRS", help="run directories or folders of them")
    report.add_argument("--out", type=_path, default=Path("report"), help="report directory (default: report)")
    report.add_argument("--timing-steps", type=_positive_int, default=20, help="steps per method for the overhead (default: 20)")
    report.add_argument("--tsne-points", type=_positive_int, default=2000, help="test samples in the t-SNE (default: 2000)")

    similarity = add_parser("similarity", help="layer-wise similarity and per-layer accuracy of trained runs",
                                     description="For each run: the accuracy of its head after every layer, the "
                                     "sample-wise cosine with the last layer and linear CKA between layers, on its test set.")
    similarity.add_argument("runs", nargs="+", type=_path, metavar="RUN_DIR", help="run directories with a checkpoint")
    similarity.add_argument("--out", type=_path, default=Path("similarity"), help="where the results go (default: similarity)")
    similarity.add_argument("--test-subset", type=int, help="measure on a fixed random subset of the test set of this "
                            "size (default: each run's own test set)")
    similarity.add_argument("--device", default="auto", help="auto (the run's device), cpu, cuda, ... (default: auto)")

    ood = add_parser("ood", help="out-of-distribution detection and retrieval of trained runs",
                     description="For each finished run (its checkpoint): AUROC and FPR at 95 % TPR of OOD scores from "
                     "its logits (MSP, MSP after its fitted temperature, energy, max logit) and features (Mahalanobis, "
                     "kNN) against each OOD set, and precision@1, R-precision and MAP@R of its test features; mean ± std "
                     "over the seeds of each config, written to OUT/ood.md and ood.json (each run's measures to "
                     "OUT/<run>.json, reused).")
    ood.add_argument("runs", nargs="+", type=_path, metavar="RUN_DIRS", help="run directories with a checkpoint, or "
                     "folders of them (of one study)")
    ood.add_argument("--out", type=_path, default=Path("ood"), help="where the measures and the table go (default: ood)")
    ood.add_argument("--sets", type=_list_of(str), help="comma-separated OOD sets: held-out (the test images of the "
                     "classes a dataset such as fashion-mnist-first6 leaves out), digits (scikit-learn's, resized), "
                     "noise (uniform), or an image dataset of the runs' image shape (default: those of the first three "
                     "that apply)")
    ood.add_argument("--knn-k", type=_positive_int, default=KNN_K, help="the neighbour of the kNN score (Sun et al. "
                     f"2022 use 50 for CIFAR-10) (default: {KNN_K})")
    ood.add_argument("--device", default="auto", help="auto (the run's device), cpu, cuda, ... (default: auto)")

    reproduce = add_parser("reproduce", help="reproduce a table of the paper", description="Run every method x seed of a preset and print the table.")
    reproduce.add_argument("preset", help="a dataset with a paper table: " + ", ".join(PRESETS) + "; or a layer-wise "
                           "study (standard vs aligned vs separate heads, CE and ITRA-c): " + ", ".join(LAYERWISE_PRESETS))
    reproduce.add_argument("--model", help="which of the paper's models for that dataset (default: the first)")
    reproduce.add_argument("--seeds", type=_positive_int, default=3, help="seeds per method (default: 3)")
    reproduce.add_argument("--smoke", action="store_true", help="a small subset and one epoch: checks the pipeline in seconds")
    reproduce.add_argument("--out", type=_path, default=Path("runs"), help="where the runs and the table go (default: runs)")
    reproduce.add_argument("--epochs", type=int, help="override the preset's epochs")
    reproduce.add_argument("--device", help="auto, cpu, cuda, ... (default: auto)")
    reproduce.add_argument("--data-dir", help="dataset directory (default: the dataset's standard location)")
    reproduce.add_argument("--timing-steps", type=_positive_int, default=30, help="steps per method for the step-time ratio (default: 30)")
    reproduce.add_argument("--quiet", action="store_true", help="no progress bars")
    reproduce.add_argument("--table-only", action="store_true", help="train nothing: the table and figures of the runs "
                           "that have ended, the others listed as not run yet (a long study run in parts)")
    add_launch_flags(reproduce)
    return parser


def _train(args: argparse.Namespace) -> int:
    from itra.experiments.runs import resume, run

    if args.resume is not None:
        check_resume_flags(args)
        run_dir, summary = resume(args.resume, progress=not args.quiet)
    else:
        config = TrainConfig(**_flag_values(args), world_size=launched_world_size())
        _note_ignored("train", [config])
        run_dir, summary = run(config, args.out, progress=not args.quiet)
    if is_failed(summary):
        _main_prints(f"itra train: {run_dir} {summary['status']}: {summary['reason']}")
        return 1
    print(f"{run_dir}: test accuracy {summary['test_accuracy']:.2f}%, test CE {summary['test_cross_entropy']:.4f}, "
          f"ECE {summary['test_ece']:.4f} after {summary['epoch']} epochs")
    return 0


def check_resume_flags(args: argparse.Namespace) -> None:
    """`--resume` trains the run's own config (its config.json): a config flag given with it, at any value, is refused,
    not ignored."""
    given = list(_flag_values(args))
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise BadValue(f"--resume reads the run's own config ({args.resume}/config.json); leave {flags} out")


def _sweep(args: argparse.Namespace) -> int:
    from itra.experiments.sweep import grid_points, markdown_rows, sweep

    grid = {**_flag_values(args, skip=("seed",)), "world_size": [launched_world_size()]}
    _note_ignored("sweep", grid_points(grid))
    rows = sweep(grid, args.seeds, args.out, progress=not args.quiet, launch=_launch(args))
    print(markdown_rows(rows))
    failed = count_failed(rows)
    if failed:
        _main_prints(f"itra sweep: {failed} run(s) failed or collapsed (see \"reason\" in their summary.json); the table "
                     "counts them apart")
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from itra.experiments.report import build_report

    print(f"wrote {build_report(args.runs, args.out, args.timing_steps, args.tsne_points)}")
    return 0


def _similarity(args: argparse.Namespace) -> int:
    from itra.experiments.layerwise import measure_run

    for run_dir in args.runs:
        measured = measure_run(run_dir, args.out, args.test_subset, args.device)
        shown = " ".join("-" if value is None else f"{value:.1f}" for value in measured["accuracy"])
        print(f"{measured['run']}: accuracy after each layer (%) {shown}; written to {args.out / measured['run']}")
    return 0


def _ood(args: argparse.Namespace) -> int:
    from itra.experiments.ood import ood_report, ood_table

    result = ood_report(args.runs, args.out, args.sets, args.knn_k, args.device)
    print(ood_table(result))
    print(f"written to {args.out}/ood.md and ood.json")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from itra.experiments.reproduce import print_table, reproduce
    from itra.experiments.study import study_name

    if args.preset in LAYERWISE_PRESETS:
        return _reproduce_layerwise(args)
    result = reproduce(
        args.preset, args.out, seeds=args.seeds, smoke=args.smoke, timing_steps=args.timing_steps,
        progress=not args.quiet, model=args.model, table_only=args.table_only, launch=_launch(args), epochs=args.epochs,
        device=args.device, data_dir=args.data_dir, world_size=launched_world_size(),
    )
    print_table(result)
    print(f"table written to {args.out / study_name(args.preset, result['settings']['model'], args.smoke)}/table.md")
    failed = count_failed(result["rows"])
    if failed:
        _main_prints(f"itra reproduce: {failed} run(s) failed or collapsed; the table counts them apart")
    return 1 if failed else 0


def _reproduce_layerwise(args: argparse.Namespace) -> int:
    from itra.experiments.multi_exit import layerwise_markdown, reproduce_layerwise
    from itra.experiments.study import study_name

    if args.table_only:
        raise BadValue(f"--table-only is for the table presets ({', '.join(PRESETS)}); {args.preset} measures every "
                         "run it trains: leave it out")
    if args.model is not None:
        raise BadValue(f"{args.preset} has one model ({LAYERWISE_PRESETS[args.preset].model}): leave --model out")
    result = reproduce_layerwise(args.preset, args.out, seeds=args.seeds, smoke=args.smoke, progress=not args.quiet,
                                 launch=_launch(args), epochs=args.epochs, device=args.device, data_dir=args.data_dir,
                                 world_size=launched_world_size())
    print(layerwise_markdown(result))
    print(f"table and figures written to {args.out / study_name(args.preset, smoke=args.smoke)}/")
    failed = count_failed(list(result["rows"].values()))
    if failed:
        _main_prints(f"itra reproduce: {failed} run(s) failed or collapsed; the table counts them apart")
    return 1 if failed else 0


def _flag_values(args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """The config fields given as flags (all but the launch's, `LAUNCH_FIELDS`, and `skip`), in `FIELD_ORDER` (a
    sweep's grid is walked in it); `itra train`'s namespace holds only those given (`add_config_flags`), a sweep's
    every field."""
    return {name: getattr(args, name) for name in FIELD_ORDER if name not in LAUNCH_FIELDS + skip and hasattr(args, name)}


def _note_ignored(command: str, configs: list[TrainConfig]) -> None:
    """One line on stderr per flag that no run of `configs` reads (`itra.resolve.ignored`): it is dropped, not used."""
    from itra.resolve import ignored

    unread = [ignored(config) for config in configs]
    for name, why in unread[0].items():
        if all(name in each for each in unread):
            flag = "--" + name.replace("_", "-")
            if launch_integer("RANK") == 0:
                note(f"{flag} {getattr(configs[0], name)} is not read with {why}; ignored")


def _main_prints(message: str) -> None:
    """`message` on stderr from rank 0 only (the other ranks of a torchrun job met the same)."""
    if launch_integer("RANK") == 0:
        print(message, file=sys.stderr)


def check_out(path: Path) -> None:
    """`--out` must be (or become) a writable folder: one line before any work when it is a file or read-only."""
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise BadValue(f"--out {path}: {existing} is a file, not a folder; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadValue(f"--out {path}: {existing} is not writable; choose another --out")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        rank, world_size = check_launch()  # torchrun's environment, before anything reads it
    except UserError as error:
        print(f"itra {args.command}: error: {error}", file=sys.stderr)
        return 2
    # Results and tables (stdout) come from rank 0 of a torchrun job.
    quiet = open(os.devnull, "w") if rank else None
    try:
        if getattr(args, "out", None) is not None:
            check_out(args.out)
        with contextlib.redirect_stdout(quiet) if quiet else contextlib.nullcontext():
            return {"train": _train, "sweep": _sweep, "report": _report, "similarity": _similarity,
                    "ood": _ood, "reproduce": _reproduce}[args.command](args)
    # a user's mistake (itra.errors): bad input, missing data, a missing optional package, no network; anything else
    # is a bug of itra's and traces back
    except UserError as error:
        where = f" (rank {rank} of {world_size})" if world_size > 1 else ""
        print(f"itra {args.command}{where}: error: {error}", file=sys.stderr)
        return 2
    except RunInterrupted as interrupt:
        _main_prints(f"\ninterrupted: the finished epochs of {interrupt.run_dir} are saved; run the same command "
                     f"again, or itra train --resume {interrupt.run_dir}, to continue")
        return 130
    except KeyboardInterrupt:
        _main_prints("\ninterrupted: finished runs are kept; run the same command again to continue")
        return 130
    finally:
        if quiet:
            quiet.close()
        shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
