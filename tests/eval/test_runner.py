"""`fipo eval --run`: a run's checkpoints evaluated step by step into RUN/eval/BENCH/step_N and a curve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fipo_cli.runs.experiments import init_experiment

import pieces
import wandb_records

WORLD_SIZE = 2


MAX_RESPONSE_LENGTH = 1536


STAND_IN = textwrap.dedent(
    """
    import os, sys, tempfile
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager
    from verl.utils.fsdp_utils import get_fsdp_wrap_policy
    from verl.workers.engine.fsdp.utils import get_sharding_strategy

    WORLD_SIZE = {world_size}
    overrides = dict(argument.split("=", 1) for argument in sys.argv[1:])
    checkpoint_dir = overrides["trainer.default_local_dir"]
    model_path = overrides["actor_rollout_ref.model.path"]
    save_freq = int(overrides["trainer.save_freq"])
    steps = range(save_freq, int(overrides["trainer.total_training_steps"]) + 1, save_freq)
    rendezvous = "file://" + os.path.join(tempfile.mkdtemp(), "rendezvous")


    def rank_main(rank):
        dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=WORLD_SIZE)
        mesh = init_device_mesh("cpu", (WORLD_SIZE,), mesh_dim_names=("fsdp",))
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        # As verl's FSDP engine wraps the actor, but on the CPU: verl passes its GPU as device_id,
        # and sync_module_states (a broadcast of rank 0's weights) needs a GPU; every rank has
        # loaded the same weights anyway.
        actor = FSDP(
            model,
            auto_wrap_policy=get_fsdp_wrap_policy(model),
            device_id=torch.device("cpu"),
            sharding_strategy=get_sharding_strategy(mesh),
            device_mesh=mesh,
        )
        manager = FSDPCheckpointManager(
            model=actor,
            optimizer=torch.optim.AdamW(actor.parameters()),
            processing_class=AutoTokenizer.from_pretrained(model_path),
        )
        for step in steps:
            step_dir = os.path.join(checkpoint_dir, f"global_step_{{step}}")
            manager.save_checkpoint(os.path.join(step_dir, "actor"), global_step=step)
            if rank == 0:  # the driver's part: the dataloader's state, then the tracker
                torch.save({{}}, os.path.join(step_dir, "data.pt"))
                with open(os.path.join(checkpoint_dir, "latest_checkpointed_iteration.txt"), "w") as tracker:
                    tracker.write(str(step))
        dist.destroy_process_group()


    if __name__ == "__main__":
        # fork: the ranks share the imports above instead of paying for them again.
        mp.start_processes(rank_main, nprocs=WORLD_SIZE, start_method="fork")
    """
).format(world_size=WORLD_SIZE)


@pytest.fixture(scope="module")
def project(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose experiment `exp` has one run, trained by `fipo train` for 4 steps with
    checkpoints at steps 2 and 4 (the tiny model's weights unchanged)."""
    pieces.require("verl")
    project = tmp_path_factory.mktemp("project")
    config_file = init_experiment("exp", "qwen2.5-0.5b", "fipo", root=project / "experiments")
    (project / "stand_in.py").write_text(STAND_IN)
    text = config_file.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
    config_file.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "FIPO_DEBUG")}
    result = subprocess.run(
        [sys.executable, "-m", "fipo_cli", "train", "exp", f"model.path={tiny_model}",
         f"max_response_length={MAX_RESPONSE_LENGTH}", "trainer.total_training_steps=4", "trainer.save_freq=2"],
        cwd=project, capture_output=True, text=True, timeout=300,
        env={**env, "HOME": str(project), "CUDA_VISIBLE_DEVICES": "0"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return project


@pytest.fixture(scope="module")
def run_dir(project: Path) -> Path:
    (run,) = (project / "experiments" / "exp" / "runs").iterdir()
    return run


def actor_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"global_step_{step}" / "actor"


def test_fipo_eval_run_all_steps_writes_results_and_a_curve(project, run_dir):
    reference = f"{run_dir.parent.parent.name}/{run_dir.name}"
    pytest.importorskip("wandb")
    wandb_env = {name: str(project / "wandb-home") for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    result = subprocess.run(
        [sys.executable, "-m", "fipo_cli", "eval", "aime24", "--run", reference, "--step", "all",
         "--engine", "transformers", "--samples", "2", "--limit", "2", "--max-tokens", "8", "--json"],
        cwd=project, capture_output=True, text=True, timeout=600,
        env={**env, **wandb_env, "HOME": str(project), "WANDB_MODE": "offline"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # The run finished, so each step's results went into the training run's W&B history.
    training_id = json.loads((run_dir / "status.json").read_text())["wandb_run_id"]
    assert result.stderr.count(f"W&B: run {training_id}") == 2
    logged = [row["eval/step"] for path in wandb_records.run_files(run_dir / "wandb")
              for row in wandb_records.history(path) if "eval/step" in row]
    assert sorted(logged) == [2, 4]
    for step in (2, 4):
        results = json.loads((run_dir / "eval" / "aime24" / f"step_{step}" / "results.json").read_text())
        assert results["settings"]["model"] == str(actor_dir(run_dir, step) / "huggingface_merged")
        assert results["graders"]["dapo"]["problems"] == 2
    curve = json.loads((run_dir / "eval" / "aime24" / "curve.json").read_text())
    assert [point["step"] for point in curve["points"]] == [2, 4]
    assert "merging the checkpoint" in result.stderr
