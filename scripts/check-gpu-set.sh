#!/usr/bin/env bash
# Check the GPU training set (`pip install ".[train]"`) as far as a machine without a GPU can:
# the resolver and `pip check`, the import of every module of verl's default trainer path (the list of
# tests/training/test_doctor.py: fipo_cli.training.doctor.TRAINER_PATH_MODULES) and of fipo's verl plugin, the
# attention a run without flash_attn builds its model with (and verl's own default failing there), and
# `fipo doctor`'s report on the 32B recipe. Not part of CI: it downloads about 10 GB.
#
#   bash scripts/check-gpu-set.sh [VENV_DIR]      # default: a new directory under /tmp, removed afterwards
#   KEEP_VENV=1 bash scripts/check-gpu-set.sh     # keep it
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d /tmp/fipo-gpu-set.XXXXXX)
venv=${1:-$work/venv}
started=$SECONDS
cleanup() {
    if [[ ${KEEP_VENV:-0} != 1 ]]; then
        rm -rf "$work"
        [[ $venv == "$work/venv" ]] || rm -rf "$venv"
    fi
}
trap cleanup EXIT
step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - started)); }

step "a fresh virtual environment: $venv"
python3 -m venv "$venv"
py=$venv/bin/python
"$py" -m pip install --quiet --disable-pip-version-check --upgrade pip

step "pip install '.[train]' (the resolver)"
"$py" -m pip install --quiet --disable-pip-version-check "$repo[train]"
"$py" -m pip list --format=freeze 2>/dev/null | grep -iE '^(verl|vllm|torch|transformers|ray|flash.attn|TransferQueue)==' || true
du -sh "$venv" | cut -f1 | sed 's/^/size: /'

step "pip check"
"$py" -m pip check

step "the modules of verl's default trainer path, and fipo's verl plugin"
(cd "$work" && "$py" - <<'EOF'
import importlib, sys, time
from fipo_cli.training.doctor import PLUGIN_MODULE, TRAINER_PATH_MODULES
failed = {}
for name in (*TRAINER_PATH_MODULES, PLUGIN_MODULE):
    began = time.monotonic()
    try:
        importlib.import_module(name)
        print(f"  ok  {name} ({time.monotonic() - began:.1f} s)")
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
        print(f"  FAIL {name}: {failed[name]}")
sys.exit(1 if failed else 0)
EOF
)

step "attention without flash_attn: what auto builds, as verl builds the model"
(cd "$work" && "$py" - <<'EOF'
import importlib.util, sys, tempfile
from pathlib import Path
import torch
import verl  # fipo's plugin registers the resolver of model.attn_implementation: auto
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.model import get_hf_auto_model_class
from fipo_cli.assets.tiny_model import build_tiny_model
from fipo_cli.experiment import config, recipes
from fipo_cli.verl_adapter import compose as verl_compose
from fipo_cli.verl_adapter import overrides as verl_overrides
from fipo_cli.verl_adapter import attention

print(f"  flash_attn installed: {importlib.util.find_spec('flash_attn') is not None}")
tiny = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")
def build(model, **assignments):
    experiment = config.build(config.read_experiment(recipes.recipe_path(model)), {"model.path": str(tiny), **assignments})
    overrides = verl_overrides.experiment_overrides(experiment, experiment_name="check", checkpoint_dir=Path("/c"),
                                                    hydra_dir=Path("/h"), wandb=False, worker_env={})
    composed = verl_compose.compose(overrides)
    model_config = omega_conf_to_dataclass(composed.actor_rollout_ref.model)
    module = get_hf_auto_model_class(hf_config=model_config.hf_config).from_pretrained(
        model_config.local_path, torch_dtype=torch.float32, config=model_config.hf_config)
    return module.config._attn_implementation
outcomes = []
for model, assignments in (("qwen2.5-0.5b", {}), ("qwen2.5-32b", {"trainer.sequence_parallel_size": 1}),
                           ("qwen2.5-32b", {}), ("qwen2.5-0.5b", {"model.attn_implementation": "flash_attention_2"})):
    try:
        outcome = build(model, **assignments)
    except Exception as error:
        outcome = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    print(f"  {model} {assignments or ''}: {outcome[:300]}")
    outcomes.append(outcome)  # judged whole below: the reason comes late in the message
ok = (outcomes[0] == outcomes[1] == "sdpa" and "needs flash-attention 2" in outcomes[2]
      and "ImportError" in outcomes[3]) if importlib.util.find_spec("flash_attn") is None else True
sys.exit(0 if ok else 1)
EOF
)

step "fipo doctor on the 32B recipe (a login node: no GPU, no data yet)"
project=$work/project
mkdir -p "$project"
(cd "$project" && "$venv/bin/fipo" init fipo-32b --model qwen2.5-32b >/dev/null \
    && { COLUMNS=160 "$venv/bin/fipo" doctor fipo-32b || echo "(doctor exit code $?: the failures above are this machine's)"; })

step "done in $((SECONDS - started)) s"
