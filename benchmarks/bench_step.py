"""Seconds per training step of CE and of ITRA-c under every `--pairing`, eager and compiled, side by side.

    python benchmarks/bench_step.py                    # cnn, resnet18, mobilenetv2, minilm; writes bench_step.json
    python benchmarks/bench_step.py --quick --out /tmp/bench_step.json   # small CNN, 3 rounds: checks that it runs
    python benchmarks/bench_step.py --device cuda --steps 30
    python benchmarks/bench_step.py --models cnn resnet18 --steps 10
    python benchmarks/bench_step.py --models cnn mobilenetv2 minilm --eager --steps 5 --out /tmp/step.json   # no compile

Per model, ten steps run in turn in every round (`itra.experiments.timing.time_side_by_side`): CE and
ITRA-c with each pairing (independent, detached, previous, split), each eager and compiled
(`--compile`: `Objective.compile_extractor`); the median of `--steps` rounds after one warm-up round,
which also compiles, is reported. All runners of a model start from the same weights and see the same
batches: S1 and S2 of `--batch-size` m, and for `split` the two together (2m). Ratios are to eager CE
at batch m, per step and per epoch: a `split` step takes 2m samples, so its epoch has half the steps.
Inputs are random: each image model's usual size (`bench_models.image_shape`), 32 random tokens per text
for MiniLM (no padding). Peak memory, on CUDA only: the most allocated during one step beyond what was
allocated before it (`torch.cuda.max_memory_allocated`); on the CPU the column is left out, since the
process's peak RSS never resets and cannot tell ten runners of one process apart.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from bench_mmd import load_mmd_module
from bench_models import image_shape
from itra.config import TrainConfig
from itra.device import check_compile, resolve_device
from itra.data.batches import Batch
from itra.experiments.timing import machine_info, time_side_by_side
from itra.objective import build_objective
from itra.mmd import class_conditional_mmd
from itra.models import Classifier
from itra.models.registry import build_image_model
from itra.pairing import ONE_PROCESS, samples_per_step
from itra.train import build_optimizer, train_step

MODELS = ("cnn", "resnet18", "mobilenetv2", "minilm")
MODES = ("ce", *ONE_PROCESS)  # one process: not "ranks" (its cost is an all-gather: bench_ddp.py)
CLASSES = 10
MATCH_CALLS = 10  # calls of the matching loss per round: one call is ms against steps of up to seconds
TEXT_LENGTH = 32  # tokens per random text


def build_model(name: str) -> Classifier:
    """The same initial weights for every runner of a model (MiniLM: its pretrained encoder and a seeded head)."""
    torch.manual_seed(0)
    if name == "minilm":
        from itra.models.text import load_text_classifier

        return load_text_classifier("minilm", CLASSES)
    return build_image_model(name, CLASSES, image_shape(name)[0])


def random_batch(name: str, size: int, generator: torch.Generator, device: torch.device) -> Batch:
    """(images, labels) with images (size, C, H, W), or (input_ids, attention_mask, labels), both (size, 32)."""
    labels = torch.randint(0, CLASSES, (size,), generator=generator)
    if name == "minilm":
        input_ids = torch.randint(1000, 30000, (size, TEXT_LENGTH), generator=generator)
        inputs: tuple[torch.Tensor, ...] = (input_ids, torch.ones_like(input_ids))
    else:
        inputs = (torch.randn(size, *image_shape(name), generator=generator),)
    return tuple(tensor.to(device) for tensor in (*inputs, labels))


def step_runner(name: str, mode: str, compiled: bool, first: Batch, second: Batch,
                device: torch.device) -> Callable[[int], object]:
    """One training step of `mode` ("ce" or a pairing) on a fresh model, as `itra train` takes it."""
    config = TrainConfig(method="ce", model=name) if mode == "ce" else TrainConfig(model=name, pairing=mode)
    objective = build_objective(config, build_model(name), CLASSES).to(device).train()
    if compiled:
        objective.compile_extractor()
    optimizer, _ = build_optimizer(config, objective.parameters(), steps=1)
    s1 = tuple(torch.cat(halves) for halves in zip(first, second)) if mode == "split" else first
    s2 = second if objective.draws_second_batch else None
    return lambda _: train_step(objective, optimizer, s1, s2)


def match_runner(function: Callable[..., torch.Tensor], feature_dim: int, batch_size: int,
                 device: torch.device) -> Callable[[int], object]:
    """`MATCH_CALLS` calls of ITRA-c's matching loss alone, forward + backward, as the step computes it (the default
    "batch" bandwidth, MMD, no input checks), on random features (m, D) of the model's width and random labels."""
    generator = torch.Generator().manual_seed(1)
    h1, h2 = (torch.randn(batch_size, feature_dim, generator=generator).to(device) for _ in range(2))
    y1, y2 = (torch.randint(0, CLASSES, (batch_size,), generator=generator).to(device) for _ in range(2))

    def step(_: int) -> None:
        for _ in range(MATCH_CALLS):
            a, b = h1.detach().requires_grad_(True), h2.detach().requires_grad_(True)
            function(a, y1, b, y2, CLASSES, "batch", False).backward()

    return step


def peak_step_mib(step: Callable[[int], object], device: torch.device) -> float | None:
    """MiB allocated at the peak of one step beyond what was allocated before it (CUDA only, else None)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step(0)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def bench_model(name: str, batch_size: int, rounds: int, device: torch.device, eager_only: bool = False,
                baseline: Path | None = None) -> tuple[list[dict], dict]:
    """The rows of one model, one per (mode, eager or compiled), eager only with `eager_only`; and the matching
    loss's own time at the model's feature width, timed in the same rounds (with `baseline`, an older mmd.py's too)."""
    torch._dynamo.reset()  # the runners share one compiled function: a model's graphs must not crowd out the next's
    compiled_before = counters["frames"]["ok"]
    generator = torch.Generator().manual_seed(0)
    first, second = (random_batch(name, batch_size, generator, device) for _ in range(2))
    runners = {(mode, compiled): step_runner(name, mode, compiled, first, second, device)
               for compiled in ((False,) if eager_only else (False, True)) for mode in MODES}
    feature_dim = build_model(name).feature_dim
    matches = {("match", "itra"): match_runner(class_conditional_mmd, feature_dim, batch_size, device)}
    if baseline is not None:
        old = load_mmd_module(baseline).class_conditional_mmd
        matches[("match", "baseline")] = match_runner(old, feature_dim, batch_size, device)
    seconds = time_side_by_side({**runners, **matches}, rounds, device)  # type: ignore[arg-type]
    match = {"model": name, "feature_dim": feature_dim, **{f"{which}_s": seconds.pop(("match", which)) / MATCH_CALLS for _, which in matches}}
    if not eager_only and counters["frames"]["ok"] == compiled_before:
        raise RuntimeError(f"{name}: torch.compile compiled nothing; the compiled columns would be eager")
    ce = seconds[("ce", False)]
    match["share_of_independent_step"] = match["itra_s"] / seconds[("independent", False)]
    return [{"model": name, "mode": mode, "compiled": compiled, "step_s": step_s, "step_ratio": step_s / ce,
             "epoch_ratio": step_s / ce * batch_size / samples_per_step(None if mode == "ce" else mode, batch_size),
             "peak_step_mib": peak_step_mib(runners[(mode, compiled)], device)}
            for (mode, compiled), step_s in seconds.items()], match


def markdown(rows: list[dict], with_memory: bool) -> str:
    """One line per (model, mode): eager and compiled side by side, ratios to eager CE."""
    header = ["model", "mode", "eager ms/step", "× CE step", "× CE epoch",
              "compiled ms/step", "× CE step", "× CE epoch"]
    header += ["peak MiB eager", "peak MiB compiled"] if with_memory else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    by_key = {(row["model"], row["mode"], row["compiled"]): row for row in rows}
    for model, mode in dict.fromkeys((row["model"], row["mode"]) for row in rows):
        eager, compiled = by_key[(model, mode, False)], by_key.get((model, mode, True))
        cells = [model, mode]
        for row in (eager, compiled):
            if row is None:  # --eager
                cells += ["-", "-", "-"]
                continue
            cells += [f"{1e3 * row['step_s']:.1f}", f"{row['step_ratio']:.2f}", f"{row['epoch_ratio']:.2f}"]
        if with_memory:
            cells += [f"{row['peak_step_mib']:.0f}" if row else "-" for row in (eager, compiled)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def match_markdown(matches: list[dict]) -> str:
    """One line per model: the matching loss's ms (and the baseline's), and its share of an eager ITRA-c step."""
    baseline = "baseline_s" in matches[0]
    header = ["model", "D", "match ms", *(["baseline match ms", "saved, % of the step"] if baseline else []),
              "% of an ITRA-c step (independent)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in matches:
        step_s = row["itra_s"] / row["share_of_independent_step"]
        cells = [row["model"], str(row["feature_dim"]), f"{1e3 * row['itra_s']:.2f}"]
        if baseline:
            cells += [f"{1e3 * row['baseline_s']:.2f}", f"{100 * (row['baseline_s'] - row['itra_s']) / step_s:.2f}"]
        lines.append("| " + " | ".join([*cells, f"{100 * row['share_of_independent_step']:.2f}"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch-size", type=int, default=128, help="m: S1's size (default: 128)")
    parser.add_argument("--steps", type=int, default=20, help="timed rounds after the warm-up round (default: 20)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto (default: cpu)")
    parser.add_argument("--quick", action="store_true", help="the small CNN and 3 rounds: checks that it runs, "
                        "writes nothing unless --out is given")
    parser.add_argument("--eager", action="store_true", help="eager runners only (no torch.compile): quicker")
    parser.add_argument("--out", type=Path, help="the JSON file (default: benchmarks/bench_step.json; none with "
                        "--quick)")
    parser.add_argument("--baseline", type=Path, help="an older itra/mmd.py: its matching loss is timed beside this one")
    args = parser.parse_args()
    if args.quick:
        args.models, args.steps = ["cnn"], 3
    out = args.out or (None if args.quick else Path(__file__).with_suffix(".json"))
    device = resolve_device(args.device)
    if not args.eager:
        check_compile(device)
    # Each runner compiles for its own shapes as it would in a run of its own: `split`'s 2m batch gets a static
    # graph, not the dynamic one torch would make after seeing m first.
    torch._dynamo.config.automatic_dynamic_shapes = False
    rows, matches = [], []
    for name in args.models:
        model_rows, match = bench_model(name, args.batch_size, args.steps, device, args.eager, args.baseline)
        rows += model_rows
        matches.append(match)
    print(markdown(rows, device.type == "cuda"))
    print("\nITRA-c's matching loss alone (forward + backward, default bandwidth), timed in the same rounds:\n")
    print(match_markdown(matches))
    if device.type != "cuda":
        print("\n(peak memory is measured on CUDA only: on the CPU the process's peak RSS cannot tell the runners "
              "apart)")
    if out is not None:
        result = {"machine": machine_info(device), "batch_size": args.batch_size, "steps": args.steps, "rows": rows,
                  "match": matches}
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
