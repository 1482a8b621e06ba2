"""Vectorised class-conditional MMD vs the obvious per-class Python loop of `mmd`.

    python benchmarks/bench_mmd.py                      # full grid, writes benchmarks/bench_mmd.json
    python benchmarks/bench_mmd.py --repeats 3 --out /tmp/b.json
    python benchmarks/bench_mmd.py --quick --out /tmp/b.json            # two sizes: checks that it runs
    python benchmarks/bench_mmd.py --device cuda

Both are timed side by side in one process on the same inputs (forward + backward, per-class median
bandwidth "class", input checks off), alternating between the two, one thread, and the median time of
each is reported with their ratio. `bench_peers.py` compares against other libraries.
"""
from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import time
from pathlib import Path
from typing import Callable

import torch

from itra.experiments.timing import machine_info
from itra.mmd import class_conditional_mmd, mmd


def per_class_loop(loss: Callable[..., torch.Tensor], h1, y1, h2, y2, num_classes, min_size: int = 1) -> torch.Tensor:
    """The mean of `loss` over the classes with at least `min_size` samples in both batches."""
    values = [loss(h1[y1 == k], h2[y2 == k]) for k in range(num_classes)
              if (y1 == k).sum() >= min_size and (y2 == k).sum() >= min_size]
    return torch.stack(values).mean() if values else (h1.sum() + h2.sum()) * 0


def loop_class_conditional_mmd(h1, y1, h2, y2, num_classes):
    """The obvious implementation: one `mmd` call per class present in both batches."""
    return per_class_loop(lambda a, b: mmd(a, b, validate_args=False), h1, y1, h2, y2, num_classes)


def vectorised_class_conditional_mmd(h1, y1, h2, y2, num_classes):
    return class_conditional_mmd(h1, y1, h2, y2, num_classes, "class", validate_args=False)


def time_call(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> tuple[float, float]:
    leaves = [t.detach().requires_grad_(True) if t.is_floating_point() else t for t in inputs]
    if leaves[0].device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    value = fn(*leaves)
    value.backward()
    if leaves[0].device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, value.item()


def load_mmd_module(path: Path):
    """An older `itra/mmd.py` (e.g. `git show REV:src/itra/mmd.py > old.py`) as a module, to time beside this one."""
    spec = importlib.util.spec_from_file_location("baseline_mmd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="two sizes, 2 repeats: checks that it runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    grid = [(10, 64, 128), (100, 256, 128)] if args.quick else itertools.product((10, 100), (64, 256, 1024), (128, 512))
    repeats = 2 if args.quick else args.repeats
    rows = []
    print(f"{'K':>4} {'m':>5} {'D':>4} | {'vectorised ms':>13} {'loop ms':>9} {'speed-up':>8} | {'|diff|':>8}")
    for num_classes, batch, dim in grid:
        g = torch.Generator().manual_seed(0)
        h1, h2 = torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)
        y1, y2 = torch.randint(0, num_classes, (batch,), generator=g), torch.randint(0, num_classes, (batch,), generator=g)
        h1, h2, y1, y2 = (t.to(device) for t in (h1, h2, y1, y2))
        times = {"vectorised": [], "loop": []}
        values = {}
        fns = {"vectorised": vectorised_class_conditional_mmd, "loop": loop_class_conditional_mmd}
        for _ in range(repeats + 1):  # the first round warms up and is dropped
            for name, fn in fns.items():
                seconds, values[name] = time_call(lambda a, ya, b, yb: fn(a, ya, b, yb, num_classes), h1, y1, h2, y2)
                times[name].append(seconds)
        median = {name: sorted(t[1:])[len(t[1:]) // 2] for name, t in times.items()}
        row = {
            "num_classes": num_classes, "batch_size": batch, "feature_dim": dim,
            "vectorised_ms": 1e3 * median["vectorised"], "loop_ms": 1e3 * median["loop"],
            "speedup": median["loop"] / median["vectorised"],
            "abs_diff": abs(values["vectorised"] - values["loop"]),
        }
        rows.append(row)
        print(f"{num_classes:>4} {batch:>5} {dim:>4} | {row['vectorised_ms']:>13.2f} {row['loop_ms']:>9.2f} "
              f"{row['speedup']:>7.1f}x | {row['abs_diff']:>8.1e}")
    result = {"machine": machine_info(device), "repeats": repeats, "bandwidth": "class", "rows": rows}
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
