"""benchmarks/gpu_smoke.py in its CPU form: every CPU-able check passes, the CUDA-only ones say why they skip."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_smoke.py"


@pytest.mark.slow
def test_the_gpu_script_runs_its_cpu_checks(tmp_path):
    out = tmp_path / "smoke.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = {row["check"]: row for row in json.loads(out.read_text())["checks"]}
    assert all(row["result"] == "ok" for name, row in checks.items() if row["result"] != "skipped"), checks
    assert {"resume cnn", "resume mobilenetv2 --deterministic", "host-syncs", "mmd-autocast", "ITRATrainer 32"} <= set(checks)
    assert all("CUDA only" in row["detail"] for row in checks.values() if row["result"] == "skipped")
    assert "host-syncs" in done.stdout  # the table
