"""Samples per second of training on 1 vs 2 processes (DDP over gloo), CE and ITRA-c with the local and the
global match, and the share of a global-match step spent in the all-gather of S2's features.

    python benchmarks/bench_ddp.py                              # small CNN, m = 128; writes benchmarks/bench_ddp.json
    python benchmarks/bench_ddp.py --steps 3 --out /tmp/ddp.json   # checks that it runs

Each configuration runs in freshly spawned processes that share the machine's cores: one process with
`--threads` x 2 threads, or two with `--threads` each (the same cores in all). Every process trains the
small CNN of `itra train` on its own random batches (28x28 images, 10 classes) of the per-process batch
m (weak scaling: the global batch is N x m), inside `DistributedDataParallel` with two processes, the
three methods' steps in turn in every round (`itra.experiments.timing.time_side_by_side`, median of
`--steps` rounds after a warm-up round, rank 0's). Samples per second = N x m / step time. The
all-gather is timed alone, forward and backward, on (m, 128) features like the step's, in the same
process group; its share is that time over the global-match step's.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from itra.config import TrainConfig
from itra.distributed import all_gather_with_grad, setup, shutdown
from itra.experiments.timing import machine_info, time_side_by_side
from itra.objective import build_objective
from itra.models.registry import build_image_model
from itra.train import build_optimizer, train_step

CLASSES, FEATURES = 10, 128
MODES = {"CE": dict(method="ce"), "ITRA-c local": dict(method="itra-c"),
         "ITRA-c global": dict(method="itra-c", match_ranks="global")}


def _worker(rank: int, world: int, port: int, batch_size: int, steps: int, threads: int, results) -> None:
    if world > 1:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist = setup()
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(rank)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(batch_size, 1, 28, 28, generator=generator), torch.randint(0, CLASSES, (batch_size,),
                                                                                       generator=generator)

    runners = {}
    for label, fields in MODES.items():
        config = TrainConfig(batch_size=batch_size, lam_warmup=0, world_size=world, **fields)
        torch.manual_seed(0)
        objective = build_objective(config, build_image_model("cnn", CLASSES, 1), CLASSES).train()
        module = dist.wrap(objective, device)
        optimizer, _ = build_optimizer(config, objective.parameters(), steps=10)
        first, second = batch(), batch()
        runners[label] = (lambda _, m=module, o=optimizer, s1=first, s2=second if objective.draws_second_batch else None:
                          train_step(m, o, s1, s2))
    seconds = time_side_by_side(runners, steps, device)
    if world > 1:
        features = torch.randn(batch_size, FEATURES, generator=generator, requires_grad=True)
        seconds["all-gather"] = time_side_by_side({"all-gather": lambda _: all_gather_with_grad(features).sum().backward()},
                                                  steps, device)["all-gather"]
    if dist.is_main:
        results.put({"world_size": world, "threads_per_process": threads, "seconds": seconds,
                     "machine": machine_info(device)})
    shutdown()


def measure(world: int, batch_size: int, steps: int, threads: int) -> dict:
    """Rank 0's step times of `world` spawned processes with `threads` threads each."""
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.start_processes(_worker, args=(world, port, batch_size, steps, threads, results), nprocs=world,
                       start_method="spawn")
    return results.get()


def markdown(rows: list[dict], batch_size: int) -> str:
    single = {row["mode"]: row for row in rows if row["world_size"] == 1}
    lines = ["| processes | threads each | method | ms/step | samples/s | × 1 process | all-gather ms | share of step |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        gather = row.get("all_gather_s")
        cells = [row["world_size"], row["threads_per_process"], row["mode"], f"{1e3 * row['step_s']:.1f}",
                 f"{row['samples_per_s']:.0f}", f"{row['samples_per_s'] / single[row['mode']]['samples_per_s']:.2f}",
                 "–" if gather is None else f"{1e3 * gather:.2f}",
                 "–" if gather is None else f"{100 * gather / row['step_s']:.1f} %"]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return f"per-process batch m = {batch_size} (global batch N x m)\n\n" + "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128, help="m per process (default: 128)")
    parser.add_argument("--steps", type=int, default=30, help="timed rounds after the warm-up round (default: 30)")
    parser.add_argument("--threads", type=int, default=1, help="threads per process with 2 processes; one process "
                        "gets twice as many (default: 1)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("bench_ddp.json"))
    args = parser.parse_args()
    rows, machine = [], None
    for world in (1, 2):
        measured = measure(world, args.batch_size, args.steps, args.threads * (3 - world))
        machine = measured["machine"]
        for mode in MODES:
            step_s = measured["seconds"][mode]
            rows.append({"world_size": world, "threads_per_process": measured["threads_per_process"], "mode": mode,
                         "step_s": step_s, "samples_per_s": world * args.batch_size / step_s,
                         **({"all_gather_s": measured["seconds"]["all-gather"]} if world > 1 and "global" in mode
                            else {})})
    print(markdown(rows, args.batch_size))
    args.out.write_text(json.dumps({"batch_size": args.batch_size, "steps": args.steps, "machine": machine,
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
