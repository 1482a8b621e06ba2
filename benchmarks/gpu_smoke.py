"""The checks of a GPU machine in one script (issue 26): under 5 minutes on one GPU, no network (digits).

    python benchmarks/gpu_smoke.py --out benchmarks/gpu_smoke.json          # on a GPU machine
    python benchmarks/gpu_smoke.py --quick --device cpu --out /tmp/s.json   # its CPU form (CI, tests/)

Each check prints one row (name, result, detail) and goes into the JSON file:
- resume: a run interrupted after epoch 1 and resumed equals an uninterrupted one, metric for metric: the CNN,
  `--pairing previous`, MobileNetV2 (dropout: the CUDA generator) with `--deterministic`;
- precision: bf16 (and fp16 with its scaler, CUDA only) for itra-c and center, with a resume;
- mmd-autocast: ITRA's MMD under autocast against float64;
- host-syncs: two training steps under `HostReads` (and, on CUDA, `torch.cuda.set_sync_debug_mode("error")`);
- ITRATrainer: four steps of a tiny BERT through Hugging Face's Trainer, in float32 (and bf16, fp16 on CUDA);
- compile (CUDA only): eager against `--compile`, one epoch each;
- bench (CUDA only): the GPU columns of bench_step.py and bench_mmd.py (their own JSON files under --out's folder).
On the CPU the CUDA-only checks are printed as skipped, with the reason.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from itra.callbacks import Callback
from itra.config import TrainConfig
from itra.data.digits import load_digits
from itra.device import HostReads, resolve_device
from itra.experiments.runs import build_model
from itra.losses import ITRALoss
from itra.objective import build_objective
from itra.models.registry import build_image_model
from itra.resolve import resolve
from itra.rundir import read_metrics
from itra.train import build_optimizer, fit, train_step


class StopAfterFirstEpoch(Callback):
    def on_epoch_start(self, state) -> None:
        if state.epoch == 1:
            raise KeyboardInterrupt  # as a kill would: epoch 1's row and checkpoint are written


def rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in read_metrics(run_dir)]


def resume_check(config: TrainConfig, root: Path) -> tuple[bool, str]:
    """Whether an interrupted and resumed run of `config` (resolved, as the CLI hands it on) has the metrics of an
    uninterrupted one."""
    config = resolve(config)
    splits = load_digits()
    fit(config, splits, build_model(config, splits), root / "a", progress=False)
    try:
        fit(config, splits, build_model(config, splits), root / "b", progress=False, callbacks=[StopAfterFirstEpoch()])
    except KeyboardInterrupt:
        pass
    fit(config, splits, build_model(config, splits), root / "b", resume=True, progress=False)
    same = rows(root / "a") == rows(root / "b")
    return same, f"{config.name}: {len(rows(root / 'a'))} epochs " + ("equal" if same else "DIFFER")


def mmd_autocast_check(device: torch.device) -> tuple[bool, str]:
    """ITRA-c's MMD under autocast (bf16, and fp16 on CUDA) against float64."""
    generator = torch.Generator().manual_seed(0)
    h1, h2 = torch.randn(2, 128, 64, generator=generator).to(device)
    y1, y2 = torch.randint(0, 10, (2, 128), generator=generator).to(device)
    loss = ITRALoss(True, "batch", 10, validate_args=False)
    exact = loss(h1.double(), y1, h2.double(), y2).item()
    details, ok = [], True
    for dtype in (torch.bfloat16, *([torch.float16] if device.type == "cuda" else [])):
        with torch.autocast(device.type, dtype=dtype):
            value = loss(h1, y1, h2, y2).item()
        error = abs(value - exact) / abs(exact)
        ok &= error < 1e-3  # the loss computes in float32 under autocast
        details.append(f"{str(dtype).removeprefix('torch.')} rel. error {error:.1e}")
    return ok, ", ".join(details)


def sync_check(device: torch.device) -> tuple[bool, str]:
    """Two training steps of ce with no read back to the host (counted; on CUDA also refused by torch)."""
    config = TrainConfig(dataset="digits", method="ce")
    objective = build_objective(config, build_image_model("cnn", 10, 1), 10).to(device).train()
    optimizer, _ = build_optimizer(config, objective.parameters(), steps=3)
    batches = [(torch.randn(64, 1, 28, 28, device=device), torch.randint(0, 10, (64,), device=device)) for _ in range(3)]
    train_step(objective, optimizer, batches[0], None)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
    try:
        with HostReads() as counter:
            for batch in batches[1:]:
                train_step(objective, optimizer, batch, None)
    finally:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    return not counter.reads, f"{len(counter.reads)} host reads in 2 steps"


def compile_check(config: TrainConfig, root: Path) -> tuple[bool, str]:
    splits = load_digits()
    summaries = [fit(dataclasses.replace(config, compile=compiled), splits, build_model(config, splits),
                     root / str(compiled), progress=False) for compiled in (False, True)]
    gap = abs(summaries[0]["test_accuracy"] - summaries[1]["test_accuracy"])
    return gap < 3, f"test accuracy eager {summaries[0]['test_accuracy']:.2f}%, compiled {summaries[1]['test_accuracy']:.2f}%"


def trainer_check(device: torch.device, precision: str, root: Path) -> tuple[bool, str]:
    """`ITRATrainer` (Hugging Face `Trainer`) on `device` in `precision` (32, bf16, fp16): four steps of a tiny BERT
    built from its config (no network) on random token sequences; its logged CE and match must be finite."""
    import math

    from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

    from itra.integrations.transformers import ITRATrainer

    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 64, (64, 12), generator=generator)
    labels = torch.randint(0, 3, (64,), generator=generator)
    samples = [{"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": label}
               for ids, label in zip(input_ids, labels)]
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                                                     num_attention_heads=2, intermediate_size=64, num_labels=3))
    args = TrainingArguments(str(root), per_device_train_batch_size=8, max_steps=4, logging_steps=2, seed=0,
                             save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=device.type == "cpu",
                             bf16=precision == "bf16", fp16=precision == "fp16")
    trainer = ITRATrainer(model=model, args=args, train_dataset=samples, lam=0.5, lam_warmup=0)
    trainer.train()
    logged = [row for row in trainer.state.log_history if "train_match" in row]
    finite = bool(logged) and all(math.isfinite(row["train_ce"]) and math.isfinite(row["train_match"]) for row in logged)
    last = logged[-1] if logged else {}
    return finite, f"{len(logged)} logs, last train_ce {last.get('train_ce', float('nan')):.3f}, " \
                   f"train_match {last.get('train_match', float('nan')):.4f}"


def bench_check(out_dir: Path) -> tuple[bool, str]:
    here = Path(__file__).parent
    done = [subprocess.run([sys.executable, str(here / "bench_step.py"), "--device", "cuda", "--quick", "--out",
                            str(out_dir / "bench_step_gpu.json")]).returncode == 0,
            subprocess.run([sys.executable, str(here / "bench_mmd.py"), "--device", "cuda", "--quick", "--out",
                            str(out_dir / "bench_mmd_gpu.json")]).returncode == 0]
    return all(done), f"bench_step {'ran' if done[0] else 'FAILED'}, bench_mmd {'ran' if done[1] else 'FAILED'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu (default: auto)")
    parser.add_argument("--quick", action="store_true", help="fewer samples and checks: the CPU form CI runs")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("gpu_smoke.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    base = TrainConfig(dataset="digits", model="cnn", method="itra-c", epochs=2, batch_size=64,
                       train_subset=256 if args.quick else 1200, test_subset=100 if args.quick else 360,
                       lam_warmup=0, device=str(device), compactness_every=0)
    precisions = ["bf16", *(["fp16"] if cuda else [])]
    checks = {
        "resume cnn": lambda root: resume_check(base, root),
        "resume cnn --pairing previous": lambda root: resume_check(dataclasses.replace(base, pairing="previous"), root),
        "resume mobilenetv2 --deterministic": lambda root: resume_check(dataclasses.replace(
            base, model="mobilenetv2", method="ce", deterministic=True), root),
        **{f"precision {p} {m} + resume": (lambda root, p=p, m=m: resume_check(dataclasses.replace(
            base, method=m, precision=p, lam=0.1 if m == "center" else base.lam), root))
           for p in precisions for m in ("itra-c", "center")},
        "mmd-autocast": lambda root: mmd_autocast_check(device),
        "host-syncs": lambda root: sync_check(device),
        **{f"ITRATrainer {p}": (lambda root, p=p: trainer_check(device, p, root))
           for p in ("32", *(["bf16", "fp16"] if cuda else []))},
    }
    skipped = {"precision fp16": "CUDA only (loss scaling)", "compile eager vs --compile": "CUDA only here: the CPU's "
               "--compile is tested in tests/ and takes minutes", "bench GPU columns": "CUDA only",
               "ITRATrainer bf16/fp16": "CUDA only here (Trainer's mixed precision)"}
    if cuda:
        checks["compile eager vs --compile"] = lambda root: compile_check(dataclasses.replace(base, method="ce"), root)
        checks["bench GPU columns"] = lambda root: bench_check(args.out.parent)
        skipped = {}
    results = []
    for name, check in checks.items():
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as root:
            ok, detail = check(Path(root))
        results.append({"check": name, "result": "ok" if ok else "FAIL", "detail": detail,
                        "seconds": round(time.perf_counter() - started, 1)})
    results += [{"check": name, "result": "skipped", "detail": reason, "seconds": 0.0} for name, reason in skipped.items()]
    width = max(len(row["check"]) for row in results)
    for row in results:
        print(f"{row['check']:<{width}}  {row['result']:<7}  {row['seconds']:>6.1f}s  {row['detail']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": str(device), "gpu": torch.cuda.get_device_name(device) if cuda else None,
                                    "torch": torch.__version__, "checks": results}, indent=1) + "\n")
    return 0 if all(row["result"] != "FAIL" for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
