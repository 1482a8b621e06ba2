#!/usr/bin/env bash
# The second environment, for the tests against real timm, torchvision and pytorch-ood (which imports torchvision):
# a venv (default .venv-timm, or $1) with the torch build they were built for (from the package index: a CUDA build,
# which runs on the CPU too), then itra with its test and timm extras, and pytorch-ood, which leave that torch as it
# is (pytorch-ood 0.4 asks for torch>=1.7, torchvision>=0.12, scipy, numpy: all there by then). The main environment
# keeps the CPU torch that scripts/setup.sh pins. About 6.5 GB; here 190 s (about 2 minutes for torch, torchvision, timm).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-timm}"

if ! python3 -c "import ensurepip" 2>/dev/null; then  # Debian's python3 has venv without pip until python3-venv
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q torch torchvision timm
"$VENV/bin/pip" install -q -e ".[test,timm]"
"$VENV/bin/pip" install -q pytorch-ood
"$VENV/bin/python" -c "import torch, torchvision, timm, pytorch_ood; print('timm env: torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'pytorch-ood', pytorch_ood.__version__)"
