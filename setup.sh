#!/usr/bin/env bash
# Create .venv and install litgpt with every extra. torch comes first, pinned, so that no later
# requirement pulls a CUDA build of torch onto a CPU machine.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -c constraints.txt -e '.[all,test]'
# litdata pulls torchvision, which does not load beside the CPU torch and would break transformers;
# litgpt never needs it (litdata uses it only for images).
.venv/bin/pip uninstall -q -y torchvision || true
echo "Installed into .venv; activate it with: source .venv/bin/activate"
