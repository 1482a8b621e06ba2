#!/usr/bin/env bash
# One prepared run of the MMD and step benchmarks on a GPU machine (issue 24, item 4):
#
#     bash benchmarks/gpu.sh                 # writes benchmarks/gpu/*.json and *.log
#     OUT=/tmp/gpu bash benchmarks/gpu.sh
#
# Needs the `bench` extra (pip install --no-deps pytorch-adapt pytorch-metric-learning torchmetrics
# lightning-utilities). Without CUDA it says so and runs only the quick CPU forms, to check that it parses.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-benchmarks/gpu}"
mkdir -p "$OUT"
if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    python3 -c 'import torch; print(torch.cuda.get_device_name(0), torch.__version__)' | tee "$OUT/device.txt"
    # No host sync in the class-conditional MMD: raise on any sync during a forward + backward.
    python3 - <<'PY' 2>&1 | tee "$OUT/sync.log"
import torch
from itra.mmd import class_conditional_mmd, mmd
h1, h2 = torch.randn(256, 128, device="cuda", requires_grad=True), torch.randn(256, 128, device="cuda", requires_grad=True)
y1, y2 = torch.randint(0, 10, (256,), device="cuda"), torch.randint(0, 10, (256,), device="cuda")
for bandwidth in ("batch", "class", "multi", 0.8):
    class_conditional_mmd(h1, y1, h2, y2, 10, bandwidth, validate_args=False).backward()  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    class_conditional_mmd(h1, y1, h2, y2, 10, bandwidth, validate_args=False).backward()
    mmd(h1, h2, bandwidth, validate_args=False).backward()
    torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    print(f"{bandwidth!r}: no sync")
PY
    python3 benchmarks/bench_mmd.py --device cuda --out "$OUT/bench_mmd.json" 2>&1 | tee "$OUT/bench_mmd.log"
    python3 benchmarks/bench_peers.py --device cuda --out "$OUT/bench_peers.json" 2>&1 | tee "$OUT/bench_peers.log"
    python3 benchmarks/bench_step.py --device cuda --models cnn mobilenetv2 minilm --steps 10 \
        --out "$OUT/bench_step.json" 2>&1 | tee "$OUT/bench_step.log"
else
    echo "no CUDA device: running the quick CPU forms only (they check that the scripts run)"
    python3 benchmarks/bench_mmd.py --quick --out "$OUT/bench_mmd_cpu_quick.json"
    python3 benchmarks/bench_peers.py --quick --out "$OUT/bench_peers_cpu_quick.json"
    python3 benchmarks/bench_step.py --quick --eager
fi
