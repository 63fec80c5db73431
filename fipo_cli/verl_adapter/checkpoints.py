"""A training run's checkpoints as Hugging Face models: what ``fipo eval --run EXP/RUN --step`` loads.

verl 0.9.1 saves a run's checkpoints under ``RUN/checkpoints/`` (fipo passes
``trainer.default_local_dir=<run>/checkpoints``). With the FSDP actor, verl's default, a run
trained on W ranks holds::

    checkpoints/
        latest_checkpointed_iteration.txt        the step verl resumes from
        global_step_N/
            data.pt                              the dataloader's state
            actor/
                model_world_size_W_rank_R.pt     the weights' shard of rank R, for R < W
                optim_world_size_W_rank_R.pt     the optimizer's shard
                extra_state_world_size_W_rank_R.pt   the LR scheduler and RNG states
                fsdp_config.json                 {"FSDP_version": 1, "world_size": W}
                huggingface/                     config, generation config, tokenizer; no weights
                huggingface_merged/              fipo: the merged model, made on first use

Evaluation engines need one Hugging Face model directory, so :func:`hf_model_for` merges the
shards with verl's own model merger once and keeps the result beside them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.core.files import publish_directory, scratch_path
from fipo_cli.experiment import config
from fipo_cli.runs.layout import CHECKPOINT_DIR, RUN_CONFIG_FILE

STEP_DIR = re.compile(r"^global_step_(\d+)$")
ACTOR_DIR = "actor"
#: Written by rank 0 after its shard and ``huggingface/``; the merger reads the world size from it.
FSDP_CONFIG = "fsdp_config.json"
#: Inside ``actor/`` because verl's checkpoint rotation (``max_actor_ckpt_to_keep``) deletes
#: ``global_step_N/actor/`` whole: the merged model goes with the shards it was made from and
#: never outlives them. The name sets it apart from verl's own ``huggingface/`` (config and
#: tokenizer only, or verl's full model when ``hf_model`` is among its ``save_contents``).
MERGED_DIR = "huggingface_merged"
MERGER_TAIL_LINES = 20


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of the run that have an FSDP actor checkpoint, ascending; empty when none.

    A ``global_step_N/`` without ``actor/fsdp_config.json`` does not count: verl's rotation
    deletes ``actor/`` and leaves ``data.pt``, and the merger cannot read shards without it.
    """
    checkpoints = Path(run_dir) / CHECKPOINT_DIR
    if not checkpoints.is_dir():
        return []
    steps = []
    for entry in checkpoints.iterdir():
        match = STEP_DIR.match(entry.name)
        if match and (entry / ACTOR_DIR / FSDP_CONFIG).is_file():
            steps.append(int(match.group(1)))
    return sorted(steps)


def select_steps(run_dir: Path, step: str) -> list[int]:
    """The steps ``--step`` names: ``N``, ``latest`` or ``all`` (checked by ``fipo eval``'s request).

    A step without a checkpoint, or a run without checkpoints, is a :class:`UsageError` that
    names the steps there are.
    """
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise _no_checkpoints(run_dir)
    if step == "all":
        return steps
    if step == "latest":
        # The highest step with an actor checkpoint. verl writes latest_checkpointed_iteration.txt
        # (the step it resumes from) after the whole step is saved (actor, critic, data.pt), so
        # once a save has finished the two agree. The file is not read: verl skips it with
        # async_save, and what can be merged is what is on disk. A step still being saved counts
        # as soon as rank 0 has written fsdp_config.json; merging it then fails (a shard is
        # missing or cut short) with the merger's error, whose hint says to wait.
        return steps[-1:]
    if int(step) not in steps:
        raise _missing_step(run_dir, int(step), steps)
    return [int(step)]


def hf_model_for(run_dir: Path, step: int) -> Path:
    """A Hugging Face model directory with the actor's weights at ``step``.

    The first call merges the sharded checkpoint with verl's model merger into
    ``global_step_N/actor/huggingface_merged/``; later calls return that directory. The merge
    writes a hidden directory beside it and renames it into place when complete, so an
    interrupted merge never leaves a partial model under that name. The merged weights are
    bfloat16, as verl's merger writes them.
    """
    steps = checkpoint_steps(run_dir)
    if step not in steps:
        raise _missing_step(run_dir, step, steps) if steps else _no_checkpoints(run_dir)
    actor = Path(run_dir) / CHECKPOINT_DIR / f"global_step_{step}" / ACTOR_DIR
    merged = actor / MERGED_DIR
    if merged.is_dir():
        return merged
    return _merge(actor, merged)


def _merge(actor: Path, target: Path) -> Path:
    """Run verl's FSDP model merger on ``actor`` and move its output to ``target`` atomically."""
    by_hand = shlex.join(_merger_command(actor, Path("DIR")))
    if importlib.util.find_spec("verl") is None:
        raise FipoError(
            f"merging the checkpoint in {actor} needs verl, which is not installed here",
            hint="install fipo with the train extra (pip install -e '.[train]'), or pass --model with a merged model",
        )
    partial = scratch_path(target)
    try:
        # mkdir leaves the permissions to the umask, as for any directory the user creates
        # (tempfile.mkdtemp would make it private): teammates evaluate the same run.
        partial.mkdir()
    except OSError as exc:
        raise FipoError(
            f"cannot write the merged model beside the checkpoint: {exc}",
            hint=f"merge it elsewhere ({by_hand}) and pass --model DIR",
        ) from exc
    try:
        # A subprocess, as verl documents the merger: the state dict it holds is freed before
        # the evaluation engine loads the model, and its output is kept for the error message.
        result = subprocess.run(
            _merger_command(actor, partial),
            check=False,  # the exit code is checked below, with the output
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        if result.returncode != 0:
            tail = "\n".join(result.stdout.splitlines()[-MERGER_TAIL_LINES:])
            raise FipoError(
                f"verl's model merger failed on {actor} (exit code {result.returncode}):\n{tail}",
                hint=(
                    "if training is still saving this step, wait until it is done or pick another --step; "
                    f"to see the merger's whole output, run {by_hand}"
                ),
            )
        _seal(partial, like=actor / FSDP_CONFIG)
        # Another fipo may have merged the same step meanwhile: its model is the same as ours, and kept.
        publish_directory(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return target


def _merger_command(actor: Path, target: Path) -> list[str]:
    """verl's documented merger command line for an FSDP actor checkpoint."""
    merger = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp"]
    return [*merger, "--local_dir", str(actor), "--target_dir", str(target)]


def _seal(directory: Path, like: Path) -> None:
    """Give every file in ``directory`` the permissions of ``like`` and flush it to disk.

    transformers writes ``model.safetensors`` readable by its owner only, which would hide the
    cached model from teammates who can read the checkpoint. The flush comes before the rename
    so that the name never points at files whose data a crash could still lose.
    """
    mode = stat.S_IMODE(like.stat().st_mode)
    for folder, _, files in os.walk(directory):
        for name in files:
            path = Path(folder, name)
            path.chmod(mode)
            with open(path, "rb") as file:
                os.fsync(file.fileno())


def run_max_tokens(run_dir: Path) -> int:
    """The run's ``data.max_response_length``: what it trained with, from its ``config.yaml``."""
    path = Path(run_dir) / RUN_CONFIG_FILE
    if not path.is_file():
        raise UsageError(
            f"{path} does not exist",
            hint=f"is {run_dir} a fipo run? fipo writes {RUN_CONFIG_FILE} when it starts one; or pass --max-tokens",
        )
    return config.load(path).data.max_response_length


def _no_checkpoints(run_dir: Path) -> UsageError:
    return UsageError(
        f"run {run_dir} has no actor checkpoints in {Path(run_dir) / CHECKPOINT_DIR}",
        hint="verl saves one every trainer.save_freq steps (set in the experiment's trainer section)",
    )


def _missing_step(run_dir: Path, step: int, steps: list[int]) -> UsageError:
    return UsageError(
        f"--step {step}: run {run_dir} has no actor checkpoint for step {step}",
        hint=f"steps with checkpoints: {', '.join(map(str, steps))} (or --step latest, --step all)",
    )
