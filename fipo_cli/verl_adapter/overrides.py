"""The one mapping from fipo's settings to verl 0.9.1's hydra overrides.

Nothing else in fipo knows verl's config keys. Keys verl's config does not define carry a
``+`` (hydra's "add"); the FIPO knobs need none, since fipo's Hydra plugin adds them to
verl's ``policy_loss`` section.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from fipo_cli.assets import builtin as local_assets
from fipo_cli.core.errors import ConfigError
from fipo_cli.verl_adapter import attention, verl_keys

POLICY_LOSS = "actor_rollout_ref.actor.policy_loss"
FIPO_LOSS_MODE = "future_kl"
TRAINER_MODULE = "verl.trainer.main_ppo"
ACTOR = "actor_rollout_ref.actor"
ROLLOUT = "actor_rollout_ref.rollout"
#: Environment variables for the job's every Ray worker: verl passes this runtime env to ``ray.init``.
RUNTIME_ENV_VARS = "+ray_kwargs.ray_init.runtime_env.env_vars"
#: The run's variables, as one value (see :func:`encode_worker_env`); fipo's verl plugin sets them.
WORKER_ENV = "FIPO_WORKER_ENV"

#: The environment of ``trainer.device: cpu``, in the driver and every Ray worker (reference verl-cpu.md).
CPU_ENV = {
    # verl's platform: fipo's CPU platform, which fipo's verl plugin registers when it sees this.
    "VERL_PLATFORM": "cpu",
    # verl registers its FSDP engine for cuda and npu only; the cuda one runs on CPU tensors as well.
    "VERL_ENGINE_DEVICE": "cuda",
    # The rollout's KV cache, in GiB. Without it vLLM's CPU backend asks for gpu_memory_utilization
    # of the machine's memory minus what its worker already holds, which a small share makes negative.
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


#: The official FIPO launcher's worker environment on GPUs (the runtime_env.yaml it submits with).
CUDA_ENV = {
    # NCCL's asynchronous collectives release their buffers without recordStream: FSDP's all-gathers
    # hold less memory.
    "TORCH_NCCL_AVOID_RECORD_STREAMS": "1",
    # One hardware work queue per GPU, so kernels launch in issue order (the official runs use FSDP1).
    # verl 0.9.1 warns against it for FSDP2 (verl/trainer/constants_ppo.py): not set there.
    "CUDA_DEVICE_MAX_CONNECTIONS": "1",
}
#: Set by CUDA_ENV for FSDP1 only.
FSDP1_ONLY = ("CUDA_DEVICE_MAX_CONNECTIONS",)


def encode_worker_env(env: Mapping[str, str]) -> str:
    """``env`` as base64 of JSON. Ray passes runtime-env values through ``os.path.expandvars``, so a
    path holding ``$HOME`` would reach the workers as another path; base64 has no ``$`` (nor quotes)."""
    return base64.urlsafe_b64encode(json.dumps(dict(env), sort_keys=True).encode()).decode()


def apply_worker_env(environ: MutableMapping[str, str]) -> None:
    """In a Ray worker (from fipo's verl plugin, at ``import verl``): set the run's variables."""
    encoded = environ.get(WORKER_ENV)
    if encoded:
        environ.update(json.loads(base64.urlsafe_b64decode(encoded)))


def device_env(device: str, inherited: Mapping[str, str], *, fsdp2: bool = False) -> dict[str, str]:
    """The variables verl and vLLM read to train on ``device``: the CPU mode's, or on GPUs the official
    launcher's worker environment, where the user's own environment (``inherited``) wins."""
    if device == "cpu":
        return dict(CPU_ENV)
    return {name: inherited.get(name, value) for name, value in CUDA_ENV.items()
            if not (fsdp2 and name in FSDP1_ONLY)}


def verl_total_epochs(trainer: Any) -> int:
    """verl's ``trainer.total_epochs`` for fipo's trainer settings.

    verl 0.9.1's v1 trainer stops at ``total_training_steps`` or after ``total_epochs`` ×
    (rows // train_batch_size) steps, whichever comes first (``trainer/ppo/v1/trainer_base.py``,
    ``fit``), counting epochs in steps even though its data loader wraps around. fipo's
    ``total_epochs: null`` means no epoch limit: with ``total_training_steps`` set, verl gets that
    many epochs, which a run of at least one step per epoch never reaches; with neither set, 1.
    """
    if trainer.total_epochs is not None:
        return trainer.total_epochs
    return trainer.total_training_steps or 1


def _cpu_settings(experiment: Any) -> dict[str, Any]:
    """What verl 0.9.1 needs to train on CPU that a setting reaches (reference verl-cpu.md)."""
    return {
        # FSDP1 insists on GPUs to sync module states; FSDP2 runs on CPU with gloo.
        f"{ACTOR}.strategy": "fsdp2",
        "actor_rollout_ref.ref.strategy": "fsdp2",
        f"{ACTOR}.use_torch_compile": False,
        "actor_rollout_ref.ref.use_torch_compile": False,
        # vLLM's CPU backend has no sleep mode, no CUDA graphs, and no fast bf16 on most CPUs.
        f"+{ROLLOUT}.enable_sleep_mode": False,
        f"{ROLLOUT}.free_cache_engine": False,
        f"{ROLLOUT}.enforce_eager": True,
        f"{ROLLOUT}.dtype": "float32",
        f"{ROLLOUT}.max_model_len": experiment.max_tokens,
        # One process each where verl would start eight: a CPU machine has few cores to spare.
        f"{ROLLOUT}.agent.num_workers": 1,
        "reward.num_workers": 1,
        "data.dataloader_num_workers": 0,
        # TransferQueue starts 8 storage actors (~540 MB each) by default; with 2 cores the run stalls.
        "transfer_queue.backend.SimpleStorage.num_data_storage_units": 1,
    }


#: An OmegaConf resolver call with plain arguments (``${fipo_auto_attention:8}``), which Hydra takes unquoted.
_RESOLVER_CALL = re.compile(r"^\$\{[A-Za-z_][\w.]*:[\w.,-]*\}$")


def hydra_value(value: Any) -> str:
    """A Python value written in hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key}:{hydra_value(item)}" for key, item in value.items()) + "}"
    text = str(value)
    if (text and all(ch.isalnum() or ch in "_-./~" for ch in text)) or _RESOLVER_CALL.match(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _lines(settings: Mapping[str, Any]) -> list[str]:
    return [f"{key}={hydra_value(value)}" for key, value in settings.items()]


def _fipo_loss(knob_values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"{POLICY_LOSS}.loss_mode": FIPO_LOSS_MODE, **{f"{POLICY_LOSS}.{k}": v for k, v in knob_values.items()}}


def policy_loss_overrides(knob_values: Mapping[str, Any]) -> list[str]:
    """Overrides selecting the ``future_kl`` loss with the given knobs (the others keep their defaults)."""
    return _lines(_fipo_loss(knob_values))


def experiment_overrides(
    experiment: Any,
    *,
    experiment_name: str,
    checkpoint_dir: Path,
    hydra_dir: Path,
    wandb: bool,
    worker_env: Mapping[str, str],
    samples_dir: Path | None = None,
) -> list[str]:
    """verl overrides for one training run of an experiment (a :class:`fipo_cli.experiment.config.Experiment`).

    Args:
        experiment: the validated experiment.
        experiment_name: the run's name in verl and W&B.
        checkpoint_dir: where verl saves and, on resume, finds its checkpoints.
        hydra_dir: where verl's Hydra writes its own files (else ``outputs/`` in the working directory).
        wandb: whether the W&B logger is on.
        worker_env: variables every Ray worker needs (the trainer's logging, W&B run and device):
            the Ray cluster may have started before the trainer (a SLURM job), so they travel in
            the job's runtime env, encoded (:func:`encode_worker_env`), rather than in Ray's own
            environment.
        samples_dir: where verl dumps the responses of each step (``train/``, ``validation/``) when
            ``trainer.keep_samples`` is on; None: nowhere (a plan that starts no run).
    """
    model, data, algorithm = experiment.model, experiment.data, experiment.algorithm
    rollout, trainer, cluster = experiment.rollout, experiment.trainer, experiment.cluster
    is_fipo = algorithm.name == "fipo"
    settings: dict[str, Any] = {
        # Absolute, since the trainer (or a resumed run) may start in another directory.
        "data.train_files": [_absolute(path) for path in data.train_files],
        "data.val_files": [_absolute(path) for path in data.val_files],
        "data.prompt_key": "prompt",
        "data.max_prompt_length": data.max_prompt_length,
        "data.max_response_length": data.max_response_length,
        "data.train_batch_size": data.train_batch_size,
        "data.truncation": data.truncation,
        "data.shuffle": data.shuffle,
        "data.seed": trainer.seed,
        # GRPO group-normalised advantages with DAPO's dynamic sampling (FIPO.md §2).
        "algorithm.adv_estimator": "grpo",
        "algorithm.use_kl_in_reward": algorithm.kl_in_reward,
        "algorithm.filter_groups.enable": algorithm.dynamic_sampling,
        "algorithm.filter_groups.metric": algorithm.dynamic_sampling_metric,
        "actor_rollout_ref.model.path": _absolute(model.path) if local_assets.is_builtin(model.path) else model.path,
        "actor_rollout_ref.model.enable_gradient_checkpointing": model.gradient_checkpointing,
        "actor_rollout_ref.model.use_remove_padding": model.remove_padding,
        # verl's own default is flash-attention 2, which crashes at model load without flash_attn.
        attention.OVERRIDE: attention.verl_value(model.attn_implementation, trainer.device,
                                                 trainer.sequence_parallel_size),
        f"{ACTOR}.optim.lr": trainer.lr,
        f"{ACTOR}.optim.lr_warmup_steps": trainer.lr_warmup_steps,
        f"{ACTOR}.optim.lr_scheduler_type": trainer.lr_scheduler,
        f"{ACTOR}.optim.weight_decay": trainer.weight_decay,
        # verl 0.9.1's FSDP engine clips with the optimizer's clip_grad (workers/engine/fsdp/transformer_impl.py,
        # optimizer_step); the actor's grad_clip, which the official launcher sets, is read by nothing there.
        f"{ACTOR}.optim.clip_grad": trainer.grad_clip,
        f"{ACTOR}.ppo_mini_batch_size": trainer.mini_batch_size,
        f"{ACTOR}.use_dynamic_bsz": trainer.dynamic_batch_size,
        f"{ACTOR}.ppo_max_token_len_per_gpu": trainer.max_tokens_per_gpu or experiment.max_tokens,
        f"{ACTOR}.ulysses_sequence_parallel_size": trainer.sequence_parallel_size,
        f"{ACTOR}.fsdp_config.param_offload": trainer.param_offload,
        f"{ACTOR}.fsdp_config.optimizer_offload": trainer.optimizer_offload,
        f"{ACTOR}.data_loader_seed": trainer.seed,
        f"{ACTOR}.clip_ratio_low": algorithm.clip_ratio_low,
        f"{ACTOR}.clip_ratio_high": algorithm.clip_ratio_high,
        f"{ACTOR}.clip_ratio_c": algorithm.clip_ratio_c,
        f"{ACTOR}.loss_agg_mode": algorithm.loss_agg_mode,
        f"{ACTOR}.entropy_coeff": algorithm.entropy_coeff,
        f"{ACTOR}.use_kl_loss": algorithm.kl_loss_coef > 0,
        f"{ACTOR}.kl_loss_coef": algorithm.kl_loss_coef,
        f"{POLICY_LOSS}.loss_mode": FIPO_LOSS_MODE if is_fipo else "vanilla",
        f"{ROLLOUT}.name": rollout.engine,
        f"{ROLLOUT}.n": rollout.n,
        f"{ROLLOUT}.temperature": rollout.temperature,
        f"{ROLLOUT}.top_p": rollout.top_p,
        f"{ROLLOUT}.tensor_model_parallel_size": rollout.tensor_parallel_size,
        f"{ROLLOUT}.gpu_memory_utilization": rollout.gpu_memory_utilization,
        f"{ROLLOUT}.enable_chunked_prefill": rollout.chunked_prefill,
        f"{ROLLOUT}.max_num_batched_tokens": rollout.max_num_batched_tokens or experiment.max_tokens,
        f"{ROLLOUT}.seed": trainer.seed,
        f"{ROLLOUT}.val_kwargs.n": rollout.val_n,
        f"{ROLLOUT}.val_kwargs.temperature": rollout.val_temperature,
        f"{ROLLOUT}.val_kwargs.top_p": rollout.val_top_p,
        f"{ROLLOUT}.val_kwargs.do_sample": True,
        # The DAPO reward manager: the "Answer:" rule verifier plus the overlong penalty.
        "reward.reward_manager.name": "dapo",
        "+reward.reward_kwargs.max_resp_len": data.max_response_length,
        f"+{verl_keys.OVERLONG}.enable": algorithm.overlong_buffer,
        f"+{verl_keys.OVERLONG}.len": algorithm.overlong_buffer_len,
        f"+{verl_keys.OVERLONG}.penalty_factor": algorithm.overlong_penalty_factor,
        f"+{verl_keys.OVERLONG}.log": True,
        "trainer.logger": ["console", "file", *(["wandb"] if wandb else [])],
        "trainer.project_name": experiment.tracking.project,
        "trainer.experiment_name": experiment_name,
        "trainer.nnodes": cluster.nodes,
        "trainer.n_gpus_per_node": cluster.gpus_per_node,
        "trainer.val_before_train": trainer.val_before_train,
        "trainer.test_freq": trainer.test_freq,
        "trainer.save_freq": trainer.save_freq,
        "trainer.total_epochs": verl_total_epochs(trainer),
        "trainer.total_training_steps": trainer.total_training_steps,
        "trainer.resume_mode": "auto",
        "trainer.default_local_dir": str(checkpoint_dir),
        "trainer.device": trainer.device,
        "hydra.run.dir": str(hydra_dir),
        f"{RUNTIME_ENV_VARS}.{WORKER_ENV}": encode_worker_env(worker_env),
    }
    if trainer.keep_samples and samples_dir is not None:
        settings["trainer.rollout_data_dir"] = str(samples_dir / "train")
        settings["trainer.validation_data_dir"] = str(samples_dir / "validation")
    if algorithm.reward_function is not None:
        path, name = reward_function_location(algorithm.reward_function)
        settings["reward.custom_reward_function.path"] = path
        settings["reward.custom_reward_function.name"] = name
    if model.max_position_embeddings is not None:
        settings["+actor_rollout_ref.model.override_config.max_position_embeddings"] = model.max_position_embeddings
    cpu_settings = _cpu_settings(experiment) if trainer.device == "cpu" else {}
    settings.update(cpu_settings)
    if is_fipo:
        settings.update(_fipo_loss(algorithm.fipo_knobs()))
    extra = verl_keys.section_keys(experiment.verl)
    clashes = verl_keys.collisions(extra, map(_path, settings), map(_path, cpu_settings))
    if clashes:
        raise ConfigError(clashes, hint="a verl key fipo maps is set by its fipo key; `fipo train EXP --dry-run` "
                                        "shows every verl key fipo sets")
    # The verl section comes last: Hydra applies overrides in order, so its keys win.
    return _lines(settings) + [section_override(key) for key in extra]


def section_override(key: verl_keys.VerlKey) -> str:
    """A ``verl:`` key as verl's Hydra override: ``+KEY`` as ``++KEY`` (add or set), ``~KEY`` as a delete."""
    if key.operation == "delete":
        return f"~{key.path}" if key.value is None else f"~{key.path}={hydra_value(key.value)}"
    return f"{'++' if key.operation == 'add' else ''}{key.path}={hydra_value(key.value)}"


def _path(override_key: str) -> str:
    return override_key.lstrip("+~")


def uses_fsdp2(experiment: Any) -> bool:
    """Whether the actor trains with FSDP2: fipo's CPU mode, or a ``verl:`` key choosing it."""
    if experiment.trainer.device == "cpu":
        return True
    return any(key.path == f"{ACTOR}.strategy" and key.value == "fsdp2" for key in verl_keys.section_keys(experiment.verl))


def reward_function_location(spec: str) -> tuple[str, str]:
    """``MODULE:FUNCTION`` or ``FILE.py:FUNCTION`` as verl's ``custom_reward_function`` (path, name):
    a module as ``pkg://MODULE`` (imported in the reward worker), a file by its absolute path."""
    where, _, name = spec.rpartition(":")
    return (_absolute(where) if where.endswith(".py") else f"pkg://{where}"), name


def _absolute(path: str) -> str:
    return str(Path(local_assets.resolve(path)).expanduser().absolute())


def trainer_command(entrypoint: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """The trainer's command line: the configured entrypoint or verl's main_ppo, then the overrides."""
    return [*(entrypoint or [sys.executable, "-m", TRAINER_MODULE]), *overrides]
