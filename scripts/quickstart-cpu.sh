#!/usr/bin/env bash
# Usage: bash scripts/quickstart-cpu.sh   (from anywhere; no GPU, no model hub, no prompts)
#
# The newcomer's main job on a CPU-only machine: the CPU training set in .venv, then FIPO trains
# the `tiny` recipe for real (verl's trainer, vLLM's CPU build; a tiny model and a toy task built
# locally), then `fipo report` draws the run's charts. Prints where everything is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
python=$(bash scripts/install-cpu.sh .venv cpu,report | tail -n 1)
fipo=("$python" -m fipo_cli)
echo "fipo: training environment ready in $((SECONDS - started)) s: $(dirname "$python")"

experiment=tiny-demo
[[ -f experiments/$experiment/fipo.yaml ]] || "${fipo[@]}" init "$experiment" --model tiny
"${fipo[@]}" train "$experiment"
"${fipo[@]}" report "$experiment"
echo
echo "fipo: done in $((SECONDS - started)) s"
echo "  environment: source .venv/bin/activate   (then: fipo --help)"
echo "  experiment:  experiments/$experiment/fipo.yaml"
echo "  runs:        experiments/$experiment/runs/   (config, train.log, metrics.jsonl, checkpoints/, wandb/)"
echo "  report:      experiments/$experiment/report/report.html"
