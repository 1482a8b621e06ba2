"""`itra`'s MMD side by side with the implementations people use: pytorch-adapt's `MMDLoss` and a plain
`torch.cdist` formulation (written here), forward + backward in float32.

    pip install -e '.[bench]'                 # pytorch-adapt (installed with --no-deps, see pyproject.toml)
    python benchmarks/bench_peers.py          # full grid, one thread, writes benchmarks/bench_peers.json
    python benchmarks/bench_peers.py --quick --out /tmp/peers.json         # a few sizes, 3 rounds
    python benchmarks/bench_peers.py --baseline /path/to/old/src/itra/mmd.py   # also time an older mmd.py
    python benchmarks/bench_peers.py --device cuda

`mmd` rows: n = m samples of D features, biased MMD^2 with the median bandwidth ("single") or the
mean of kernels at 1/4, 1/2, 1, 2, 4 times it ("multi"). `class_conditional_mmd` rows (the grid of
`bench_mmd.py`): K classes, m samples per batch, against a Python loop of each peer over the classes
present in both batches, each class with its own median ("class" bandwidth), and with one median of
the pooled batch computed once ("batch"). pytorch-adapt's estimate is unbiased (it divides by n - 1,
a ZeroDivisionError for one sample), so its loop skips the classes with one sample in a batch: each
row says how many classes it computed, of how many.

Timing: every round runs each contender once, in turn, on fresh leaf tensors; the ratio peer time /
itra time is taken per round, and its median over the rounds (after one warm-up round) is reported:
> 1 means `itra` is faster. A row runs at least `--rounds` rounds, and more until itra's calls add up
to `--min-seconds`, so that a call of 1 ms is timed over hundreds of rounds.

Checks: the contenders' definitions differ (pytorch-adapt: unbiased, the x-x median; cdist: the
median with the diagonal), so each row checks in float64 that itra agrees with the cdist formulation
given itra's own sigma (`aligned_difference`, to `AGREEMENT`), and stops if not. Last, each row is
held against its target (`target_lines`): `mmd` at least as fast as the fastest peer, the
class-conditional 1.5x the fastest loop that computes every class in both batches.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path
from typing import Callable

import torch
from pytorch_adapt.layers import MMDLoss

from bench_mmd import load_mmd_module, per_class_loop, time_call
from itra.experiments.timing import machine_info
from itra.mmd import MULTI_KERNEL_SCALES, class_conditional_mmd, median_bandwidth, mmd

SCALES = {"single": (1.0,), "multi": MULTI_KERNEL_SCALES}
PEERS = ("pytorch-adapt", "cdist")  # the `mmd` rows' peers; "itra-before" is this project's older code
# The targets: itra at least this many times faster than the fastest peer (`mmd`) and than the fastest loop of a
# peer over the classes that computes every class in both batches (class-conditional).
MMD_TARGET, CLASS_TARGET = 1.0, 1.5
AGREEMENT = 1e-9  # relative: itra and the cdist formulation with itra's sigma, in float64
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cdist_mmd(x: torch.Tensor, y: torch.Tensor, scales: tuple[float, ...], sigma: torch.Tensor | None = None) -> torch.Tensor:
    """The plain formulation: one `torch.cdist` of the pooled samples, sigma its median (or given)."""
    pooled = torch.cat([x, y])
    d = torch.cdist(pooled, pooled).pow(2)
    sigma = d.detach().median() if sigma is None else sigma
    k = sum(torch.exp(-d / (sigma * s)) for s in scales) / len(scales)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def pooled_median(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """itra's sigma: the lower median of the pooled samples' pairs i < j."""
    pooled = torch.cat([x, y])
    return median_bandwidth(torch.cdist(pooled, pooled).square())


def aligned_difference(itra_value: torch.Tensor, reference: torch.Tensor) -> float:
    """|itra - reference| / |reference|; raises if above `AGREEMENT` (a benchmark of a wrong result is no benchmark)."""
    difference = float((itra_value - reference).abs() / reference.abs())
    if not difference <= AGREEMENT:
        raise AssertionError(f"itra {float(itra_value)!r} and the aligned cdist formulation {float(reference)!r} "
                             f"differ by {difference:.1e} (relative), more than {AGREEMENT}")
    return difference


def adapt_mmd(scales: tuple[float, ...], sigma: float | None = None) -> Loss:
    """pytorch-adapt's quadratic MMD; its kernel is exp(-d * kernel_scale / median), so 1/s for our s."""
    kernel_scales = 1.0 if len(scales) == 1 else torch.tensor([1 / s for s in scales])
    return MMDLoss(kernel_scales=kernel_scales, mmd_type="quadratic", bandwidth=sigma)


def side_by_side(contenders: dict[str, Callable[..., torch.Tensor]], inputs, rounds: int,
                 min_seconds: float) -> dict[str, object]:
    times = {name: [] for name in contenders}
    values = {}
    while len(times["itra"]) <= rounds or sum(times["itra"][1:]) < min_seconds:  # the first round warms up
        for name, fn in contenders.items():
            seconds, values[name] = time_call(fn, *inputs)
            times[name].append(seconds)
    times = {name: t[1:] for name, t in times.items()}
    ratios = {name: statistics.median(a / b for a, b in zip(t, times["itra"])) for name, t in times.items() if name != "itra"}
    return {"ms": {name: 1e3 * statistics.median(t) for name, t in times.items()}, "ratio": ratios, "values": values,
            "rounds": len(times["itra"])}


def mmd_rows(sizes, dims, rounds, min_seconds, device, baseline) -> list[dict[str, object]]:
    rows = []
    for kernels, n, dim in itertools.product(SCALES, sizes, dims):
        g = torch.Generator().manual_seed(n + dim)
        x, y = torch.randn(n, dim, generator=g).to(device), (torch.randn(n, dim, generator=g) + 0.3).to(device)
        scales, mode = SCALES[kernels], "batch" if kernels == "single" else "multi"
        contenders = {
            "itra": lambda a, b: mmd(a, b, mode, validate_args=False, squared=True),
            "pytorch-adapt": adapt_mmd(scales),
            "cdist": lambda a, b: cdist_mmd(a, b, scales),
        }
        if baseline is not None:
            old_mode = None if kernels == "single" else "multi"
            contenders["itra-before"] = lambda a, b: baseline.mmd(a, b, old_mode, validate_args=False, squared=True)
        result = side_by_side(contenders, (x, y), rounds, min_seconds)
        x64, y64 = x.double(), y.double()
        result["aligned_difference"] = aligned_difference(
            mmd(x64, y64, mode, squared=True), cdist_mmd(x64, y64, scales, pooled_median(x64, y64)))
        rows.append({"kernels": kernels, "n": n, "dim": dim, **result})
        print(f"mmd {kernels:>6} n={n:>4} D={dim:>4} | itra {result['ms']['itra']:7.2f} ms | "
              + " ".join(f"{k} {v:5.2f}x" for k, v in result["ratio"].items()), flush=True)
    return rows


def class_rows(grid, rounds, min_seconds, device, baseline) -> list[dict[str, object]]:
    rows = []
    for (num_classes, m, dim), mode in itertools.product(grid, ("class", "batch")):
        g = torch.Generator().manual_seed(0)
        h1, h2 = torch.randn(m, dim, generator=g).to(device), torch.randn(m, dim, generator=g).to(device)
        y1 = torch.randint(0, num_classes, (m,), generator=g).to(device)
        y2 = torch.randint(0, num_classes, (m,), generator=g).to(device)

        def batch_sigma(a, b):  # the pooled batch's median, once (as "batch" defines it), for the loops
            pooled = torch.cat([a, b]).detach()
            return torch.cdist(pooled, pooled).pow(2).median()

        def cdist_loop(a, ya, b, yb):
            sigma = batch_sigma(a, b) if mode == "batch" else None
            return per_class_loop(lambda u, v: cdist_mmd(u, v, (1.0,), sigma), a, ya, b, yb, num_classes)

        def adapt_loop(a, ya, b, yb):
            loss = adapt_mmd((1.0,), batch_sigma(a, b).item() if mode == "batch" else None)
            # Its unbiased quadratic estimate divides by n (n - 1): classes with one sample are skipped
            # (fewer calls than the others make: in its favour).
            return per_class_loop(loss, a, ya, b, yb, num_classes, min_size=2)

        contenders = {
            "itra": lambda a, ya, b, yb: class_conditional_mmd(a, ya, b, yb, num_classes, mode, False, True),
            "pytorch-adapt loop": adapt_loop,
            "cdist loop": cdist_loop,
        }
        if baseline is not None:
            contenders["itra-before"] = lambda a, ya, b, yb: baseline.class_conditional_mmd(
                a, ya, b, yb, num_classes, mode, False, True)
        result = side_by_side(contenders, (h1, y1, h2, y2), rounds, min_seconds)
        a, b = h1.double(), h2.double()
        sigma = pooled_median(a, b) if mode == "batch" else None  # None: each class's own, as itra takes it
        reference = per_class_loop(lambda u, v: cdist_mmd(u, v, (1.0,), pooled_median(u, v) if sigma is None else sigma),
                                   a, y1, b, y2, num_classes)
        result["aligned_difference"] = aligned_difference(
            class_conditional_mmd(a, y1, b, y2, num_classes, mode, squared=True), reference)
        sizes = [torch.bincount(y, minlength=num_classes) for y in (y1, y2)]
        shared = int(((sizes[0] > 0) & (sizes[1] > 0)).sum())  # the classes itra and the cdist loop compute
        adapt_classes = int(((sizes[0] > 1) & (sizes[1] > 1)).sum())  # the ones pytorch-adapt's loop can
        rows.append({"bandwidth": mode, "num_classes": num_classes, "m": m, "dim": dim, "classes": shared,
                     "adapt_classes": adapt_classes, "computes": {"pytorch-adapt loop": adapt_classes, "cdist loop": shared},
                     **result})
        print(f"class {mode:>5} K={num_classes:>3} m={m:>4} D={dim:>4} ({shared} classes, pytorch-adapt {adapt_classes}) | "
              f"itra {result['ms']['itra']:7.2f} ms | " + " ".join(f"{k} {v:5.2f}x" for k, v in result["ratio"].items()), flush=True)
    return rows


def target_lines(result: dict[str, object]) -> list[str]:
    """Each row against its target (`MMD_TARGET`, `CLASS_TARGET`): the ratio to the fastest peer, and for the
    class-conditional rows, to the fastest loop that computes every class in both batches. A loop that computes
    fewer (pytorch-adapt's skips classes with one sample in a batch: its estimate divides by n - 1) does less
    work, so it is shown beside but is not the reference."""
    lines, missed = [], 0
    for row in result["mmd"]:
        fastest = min(row["ratio"][peer] for peer in PEERS)
        missed += fastest < MMD_TARGET
        lines.append(f"mmd {row['kernels']:>6} n={row['n']:>4} D={row['dim']:>4}: {fastest:.2f}x the fastest peer "
                     f"({'met' if fastest >= MMD_TARGET else 'MISSED'})")
    for row in result["class_conditional_mmd"]:
        full = [peer for peer, classes in row["computes"].items() if classes == row["classes"]]
        fastest = min(row["ratio"][peer] for peer in full)
        missed += fastest < CLASS_TARGET
        partial = [f"{peer} ({row['computes'][peer]} of {row['classes']} classes) {row['ratio'][peer]:.2f}x"
                   for peer in row["computes"] if peer not in full]
        lines.append(f"class {row['bandwidth']:>5} K={row['num_classes']:>3} m={row['m']:>4} D={row['dim']:>4}: "
                     f"{fastest:.2f}x the fastest loop computing all {row['classes']} classes "
                     f"({'met' if fastest >= CLASS_TARGET else 'MISSED'})" + (f"; beside: {', '.join(partial)}" if partial else ""))
    total = len(result["mmd"]) + len(result["class_conditional_mmd"])
    return [*lines, f"targets met in {total - missed} of {total} rows"]


def markdown(result: dict[str, object]) -> str:
    """The two tables of RESULTS.md: itra's time and peer / itra time ratios (> 1: itra faster)."""
    def table(rows, keys, names):
        peers = list(rows[0]["ratio"])
        lines = ["| " + " | ".join([*names, "itra ms", *(f"{p} ×" for p in peers)]) + " |",
                 "|" + "---|" * (len(names) + 1 + len(peers))]
        for row in rows:
            cells = [str(row[k]) for k in keys] + [f"{row['ms']['itra']:.2f}"] + [f"{row['ratio'][p]:.2f}" for p in peers]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
    return (table(result["mmd"], ("kernels", "n", "dim"), ("kernels", "n = m", "D")) + "\n\n"
            + table(result["class_conditional_mmd"], ("bandwidth", "num_classes", "m", "dim", "classes", "adapt_classes"),
                    ("bandwidth", "K", "m", "D", "classes in both", "of them pytorch-adapt's")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="the fewest timed rounds of a row (default: 9)")
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="more rounds until itra's calls add up to this (default: 0.5)")
    parser.add_argument("--quick", action="store_true", help="a few sizes and 3 rounds: checks that it runs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baseline", type=Path, help="an older itra/mmd.py to time beside (before/after)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    baseline = load_mmd_module(args.baseline) if args.baseline else None
    if args.quick:
        sizes, dims, grid, rounds, args.min_seconds = (64,), (64,), [(10, 64, 128)], 3, 0.0
    else:
        sizes, dims, rounds = (64, 128, 256), (64, 256, 512), args.rounds
        grid = list(itertools.product((10, 100), (64, 256, 1024), (128, 512)))
    result = {
        "machine": machine_info(device), "rounds": rounds, "min_seconds": args.min_seconds, "baseline": str(args.baseline) if args.baseline else None,
        "mmd": mmd_rows(sizes, dims, rounds, args.min_seconds, device, baseline),
        "class_conditional_mmd": class_rows(grid, rounds, args.min_seconds, device, baseline),
    }
    result["targets"] = target_lines(result)
    args.out.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    print("\n".join(["", *result["targets"]]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
