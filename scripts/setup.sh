#!/usr/bin/env bash
# Installs everything itra needs on a fresh Debian machine: the Debian data packages, torch (first and
# pinned, so no other package pulls a multi-GB CUDA build), then itra itself with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist wordnet-base >/dev/null

python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
