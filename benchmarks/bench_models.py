"""Seconds per training step of every image model at batch 128, CE and ITRA-c side by side.

    python benchmarks/bench_models.py                       # CPU, all models, writes benchmarks/bench_models.json
    python benchmarks/bench_models.py --device cuda --steps 20
    python benchmarks/bench_models.py --models cnn resnet18 --steps 3

Inputs are random tensors of each model's usual size (28x28x1 for the small CNN, 32x32x3 with the
CIFAR stem for the others), so data loading is not timed. For each model, one CE step and one
ITRA-c step (two forward passes, S1 and S2, and one backward) alternate; the median of `--steps`
rounds after one warm-up round is reported, and their ratio.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from itra.config import TrainConfig
from itra.device import resolve_device
from itra.experiments.timing import machine_info, time_side_by_side
from itra.objective import build_objective
from itra.models.registry import IMAGE_MODELS, build_image_model
from itra.train import train_step


def image_shape(name: str) -> tuple[int, int, int]:
    """The usual input of an image model: 28x28x1 for the small CNN, 32x32x3 (the CIFAR stem) for the others."""
    return (1, 28, 28) if name == "cnn" else (3, 32, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(IMAGE_MODELS), choices=list(IMAGE_MODELS))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)
    rows = []
    print(f"{'model':>12} {'params':>11} | {'CE s/step':>9} {'ITRA-c s/step':>13} {'ratio':>6}")
    for name in args.models:
        shape = image_shape(name)
        batches = [(torch.randn(args.batch_size, *shape, generator=generator).to(device),
                    torch.randint(0, 10, (args.batch_size,), generator=generator).to(device)) for _ in range(2)]
        steps = {}
        for method in ("ce", "itra-c"):
            torch.manual_seed(0)
            model = build_image_model(name, 10, shape[0])
            objective = build_objective(TrainConfig(method=method, model=name), model, 10).to(device).train()
            optimizer = torch.optim.SGD(objective.parameters(), lr=0.01, momentum=0.9)
            steps[method] = lambda _, o=objective, opt=optimizer: train_step(o, opt, batches[0], batches[1])
        seconds = time_side_by_side(steps, args.steps, device)
        ce, itra = seconds["ce"], seconds["itra-c"]
        params = sum(p.numel() for p in model.parameters())  # the same architecture for both
        rows.append({"model": name, "input": list(shape), "parameters": params, "ce_s": ce, "itra_c_s": itra, "ratio": itra / ce})
        print(f"{name:>12} {params:>11,} | {ce:>9.3f} {itra:>13.3f} {itra / ce:>6.2f}")
    result = {"machine": machine_info(device), "batch_size": args.batch_size, "steps": args.steps, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
