"""A run with real verl FSDP checkpoints, made once per session: `fipo train` with a stand-in trainer that
saves the tiny model's weights through verl's own checkpoint manager on 2 CPU ranks (steps 2 and 4)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from fipo_cli.runs.experiments import init_experiment

from fipo_run import run_fipo

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


def train_checkpoints(project: Path, tiny_model: Path) -> Path:
    """``project`` with experiment `exp` and its one run, trained by `fipo train` for 4 steps with
    checkpoints at steps 2 and 4 (the tiny model's weights unchanged); the run's directory."""
    config_file = init_experiment("exp", "qwen2.5-0.5b", "fipo", root=project / "experiments")
    (project / "stand_in.py").write_text(STAND_IN)
    text = config_file.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
    config_file.write_text(text)
    result = run_fipo(project, "train", "exp", f"model.path={tiny_model}", f"max_response_length={MAX_RESPONSE_LENGTH}",
                      "trainer.total_training_steps=4", "trainer.save_freq=2", CUDA_VISIBLE_DEVICES="0")
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = (project / "experiments" / "exp" / "runs").iterdir()
    return run


def actor_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"global_step_{step}" / "actor"
