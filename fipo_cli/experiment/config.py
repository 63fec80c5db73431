"""The experiment config: its typed schema, loading, overrides and validation.

An experiment is one YAML file (``experiments/NAME/fipo.yaml``) with the sections below.
Loading checks every key against the schema and reports every problem at once: the dotted
key, the bad value, what is allowed, and for an unknown key the closest known one. Only
:class:`Experiment` objects leave this module, never raw dicts.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fipo_cli.assets import builtin as local_assets
from fipo_cli.core.clock import TIME_LIMIT
from fipo_cli.core.errors import ConfigError, UsageError, number_problem, unknown_key_problem
from fipo_cli.core.files import read_utf8
from fipo_cli.loss import knobs

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: The launchers (:mod:`fipo_cli.launch`) an experiment may name as ``cluster.launcher``.
LauncherName = Literal["local", "slurm", "ray"]
REWARD_FUNCTION = re.compile(r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_]*$")

#: Short names accepted by ``fipo train``/``fipo sweep`` for the keys swept most.
KEY_ALIASES: dict[str, str] = {
    "gamma": "algorithm.gamma",
    "tau": "algorithm.decay_rate",
    "eps_f_low": "algorithm.future_kl_clip_low",
    "eps_f_high": "algorithm.future_kl_clip_high",
    "safety_thresh": "algorithm.safety_thresh",
    "lr": "trainer.lr",
    "nodes": "cluster.nodes",
    "max_response_length": "data.max_response_length",
    "n": "rollout.n",
    "seed": "trainer.seed",
}
#: Names people reach for (from verl, Hugging Face and other trainers) that the schema spells otherwise:
#: an unknown key with one of these last parts is pointed at the schema's key.
SYNONYMS: dict[str, str] = {
    "learning_rate": "trainer.lr",
    "batch_size": "data.train_batch_size",
    "epochs": "trainer.total_epochs",
    "num_train_epochs": "trainer.total_epochs",
    "max_steps": "trainer.total_training_steps",
    "response_length": "data.max_response_length",
    "prompt_length": "data.max_prompt_length",
    "gpus": "cluster.gpus_per_node",
    "n_gpus_per_node": "cluster.gpus_per_node",
    "nnodes": "cluster.nodes",
    "model_name_or_path": "model.path",
}

#: The official launcher's spellings of fipo keys: as ``verl.KEY`` (``+`` or not) or in the ``verl:``
#: section they set the fipo key, with the official meaning. Its FIPO knobs live in the policy_loss
#: section fipo's plugin defines; its overlong buffer is ``reward_model.overlong_buffer``, which verl
#: 0.9.1 renamed to the DAPO reward manager's ``reward.reward_kwargs.overlong_buffer_cfg``.
OFFICIAL_SPELLINGS: dict[str, str] = {
    **{f"actor_rollout_ref.actor.policy_loss.{knob}": f"algorithm.{knob}" for knob in (
        "decay_rate", "gamma", "future_kl_clip_low", "future_kl_clip_high", "future_kl_clip_ratio",
        "future_kl_clip_high_only", "safety_thresh", "future_kl_start", "future_kl_window", "future_kl_average")},
    "reward_model.overlong_buffer.enable": "algorithm.overlong_buffer",
    "reward_model.overlong_buffer.len": "algorithm.overlong_buffer_len",
    "reward_model.overlong_buffer.penalty_factor": "algorithm.overlong_penalty_factor",
}
#: Keys that meant something in the official (verl 0.5) trainer and mean nothing in verl 0.9.1's: a file
#: that sets one still loads, with a warning (fipo_cli/verl_adapter/inert.py); an override or a sweep
#: axis that sets one is refused.
RETIRED: dict[str, str] = {
    "data.gen_batch_size": (
        "verl 0.9.1 has no generation batch to size: with dynamic sampling its v1 trainer refills the groups "
        "it filters out one prompt at a time (trainer/ppo/v1/trainer_base.py, _init_dataloader sets it to 1), "
        "and without it a step generates exactly data.train_batch_size prompts"
    ),
    "algorithm.max_num_gen_batches": (
        "verl 0.9.1's v1 replay buffer ignores it (trainer/ppo/v1/trainer_base.py logs so): dynamic sampling "
        "refills until data.train_batch_size groups are kept, with no cap on generation rounds"
    ),
}
#: The command-line prefix of any verl key: ``verl.KEY=VALUE``, ``verl.+KEY=VALUE``, ``verl.~KEY``.
VERL_PREFIX = "verl."
#: A verl key as Hydra writes an override's key: an optional ``+``/``++``/``~``, then a dotted path.
VERL_KEY = re.compile(r"^(\+\+|\+|~)?([A-Za-z_][\w-]*(?:\.[\w-]+)*)$")


def _check(rule: str, bound: float | None = None) -> dict[str, Any]:
    return {"rule": rule, "bound": bound}


def positive() -> dict[str, Any]:
    return _check("> 0")


def at_least(bound: float) -> dict[str, Any]:
    return _check(">=", bound)


def fraction() -> dict[str, Any]:
    return _check("(0, 1]")


@dataclass
class ModelConfig:
    path: str = ""  # Hugging Face id or local directory; required
    max_position_embeddings: int | None = field(default=None, metadata=positive())
    gradient_checkpointing: bool = True
    remove_padding: bool = True
    attn_implementation: Literal["auto", "flash_attention_2", "sdpa", "eager"] = "auto"
    """How the actor and reference models attend: ``auto`` takes flash-attention 2 where ``flash_attn``
    imports in the trainer's process (decided on the cluster's node), sdpa otherwise."""


@dataclass
class DataConfig:
    train_files: list[str] = field(default_factory=lambda: ["data/dapo-math-17k.parquet"])
    val_files: list[str] = field(default_factory=lambda: ["data/aime24.parquet"])
    max_prompt_length: int = field(default=2048, metadata=positive())
    max_response_length: int = field(default=20480, metadata=positive())
    train_batch_size: int = field(default=512, metadata=positive())
    gen_batch_size: int | None = field(default=None, metadata=positive())
    """Retired (see RETIRED): verl 0.9.1 ignores it."""
    truncation: Literal["left", "right", "middle", "error"] = "left"
    shuffle: bool = True


@dataclass
class AlgorithmConfig:
    name: Literal["fipo", "dapo"] = "fipo"
    decay_rate: float = 32.0
    gamma: float | None = None
    future_kl_clip_low: float | None = None
    """ε_f,low: influence weights are clipped below at 1 − ε_f,low; null: 0.0."""
    future_kl_clip_high: float | None = None
    """ε_f,high: influence weights are clipped above at 1 + ε_f,high; null: 0.2."""
    future_kl_clip_ratio: float | None = None
    """The official launcher's spelling of the bounds: r gives [1 − r, 1 + r], or [1, 1 + r] with
    future_kl_clip_high_only; 0 switches influence clipping off. Not together with the pair above."""
    future_kl_clip_high_only: bool | None = None
    safety_thresh: float = 10.0
    clip_ratio_low: float = field(default=0.2, metadata=at_least(0.0))
    clip_ratio_high: float = field(default=0.28, metadata=at_least(0.0))
    clip_ratio_c: float = field(default=10.0, metadata=_check("> 1"))
    loss_agg_mode: Literal["token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean"] = "token-mean"
    entropy_coeff: float = field(default=0.0, metadata=at_least(0.0))
    kl_loss_coef: float = field(default=0.0, metadata=at_least(0.0))
    kl_in_reward: bool = False
    dynamic_sampling: bool = True
    dynamic_sampling_metric: Literal["acc", "score", "reward"] = "acc"
    """What a group must vary in to be kept: the reward function's ``acc`` or ``score``, or ``reward``
    (the score plus the overlong penalty), as verl 0.9.1's replay buffer reads them."""
    max_num_gen_batches: int | None = field(default=None, metadata=at_least(0))
    """Retired (see RETIRED): verl 0.9.1 ignores it."""
    overlong_buffer: bool = True
    overlong_buffer_len: int = field(default=4096, metadata=positive())
    overlong_penalty_factor: float = field(default=1.0, metadata=at_least(0.0))
    # fipo's extensions of the Future-KL sum (the official loss ignores these; see `fipo knobs --help`).
    future_kl_start: Literal["include_current", "exclude_current"] = "include_current"
    future_kl_window: int = -1
    future_kl_average: bool = False
    reward_function: str | None = None
    """``MODULE:FUNCTION`` or ``FILE.py:FUNCTION`` that verl's reward manager calls for a response's
    score instead of its rule verifier; unset: verl's default (the "Answer:" verifier for DAPO's data)."""

    def fipo_knobs(self) -> dict[str, Any]:
        """The FIPO loss knobs in :mod:`fipo_cli.loss.knobs`' names."""
        return {
            "decay_rate": self.decay_rate,
            "gamma": self.gamma,
            "future_kl_clip_low": self.future_kl_clip_low,
            "future_kl_clip_high": self.future_kl_clip_high,
            "future_kl_clip_ratio": self.future_kl_clip_ratio,
            "future_kl_clip_high_only": self.future_kl_clip_high_only,
            "safety_thresh": self.safety_thresh,
            "future_kl_start": self.future_kl_start,
            "future_kl_window": self.future_kl_window,
            "future_kl_average": self.future_kl_average,
        }


@dataclass
class RolloutConfig:
    engine: Literal["vllm", "sglang"] = "vllm"
    n: int = field(default=16, metadata=positive())
    temperature: float = field(default=1.0, metadata=at_least(0.0))
    top_p: float = field(default=1.0, metadata=fraction())
    tensor_parallel_size: int = field(default=4, metadata=positive())
    gpu_memory_utilization: float = field(default=0.8, metadata=fraction())
    chunked_prefill: bool = True
    max_num_batched_tokens: int | None = field(default=None, metadata=positive())
    val_n: int = field(default=32, metadata=positive())
    val_temperature: float = field(default=1.0, metadata=at_least(0.0))
    val_top_p: float = field(default=0.7, metadata=fraction())


@dataclass
class TrainerConfig:
    device: Literal["cuda", "cpu"] = "cuda"
    """Where verl trains: ``cuda`` (GPUs), or ``cpu`` (no accelerator: gloo, vLLM's CPU build; tiny models).
    On CPU, ``cluster.gpus_per_node`` counts the CPU worker processes per node."""
    mini_batch_size: int = field(default=32, metadata=positive())
    lr: float = field(default=1e-6, metadata=positive())
    lr_warmup_steps: int = field(default=10, metadata=at_least(0))
    lr_scheduler: Literal["constant", "cosine"] = "constant"
    weight_decay: float = field(default=0.1, metadata=at_least(0.0))
    grad_clip: float = field(default=1.0, metadata=positive())
    dynamic_batch_size: bool = True
    max_tokens_per_gpu: int | None = field(default=None, metadata=positive())
    sequence_parallel_size: int = field(default=8, metadata=positive())
    param_offload: bool = True
    optimizer_offload: bool = True
    total_training_steps: int | None = field(default=None, metadata=positive())
    """How long the run trains, in steps of ``data.train_batch_size`` prompts (the horizon)."""
    total_epochs: int | None = field(default=None, metadata=positive())
    """A cap in passes over the training data (verl counts an epoch as rows // train_batch_size steps);
    null: none, the data loader wraps around as often as ``total_training_steps`` needs (1 epoch when
    that is null too)."""
    save_freq: int = field(default=5, metadata=at_least(-1))
    test_freq: int = field(default=5, metadata=at_least(-1))
    val_before_train: bool = True
    keep_samples: bool = False
    """Keep every training and validation response as JSONL in the run's ``samples/`` (verl's
    ``trainer.rollout_data_dir`` and ``trainer.validation_data_dir``): one file per step."""
    seed: int = 42
    # The trainer's command; empty means `python -m verl.trainer.main_ppo` with this Python.
    entrypoint: list[str] = field(default_factory=list)


@dataclass
class ClusterConfig:
    launcher: LauncherName = "local"
    nodes: int = field(default=1, metadata=positive())
    gpus_per_node: int = field(default=8, metadata=positive())
    cpus_per_task: int | None = field(default=None, metadata=positive())
    """CPUs SLURM gives the job's one task on each node (``--cpus-per-task``). Unset: a GPU job asks for
    none (the cluster's default), a ``trainer.device: cpu`` job for 2 per CPU worker (``gpus_per_node``)."""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)
    """Shell lines run before the trainer on every node (``module load …``, a container's set-up)."""
    extra_sbatch: list[str] = field(default_factory=list)
    """More ``#SBATCH`` options, e.g. ``--mem=0`` or ``--exclusive``."""
    requeue: bool = True
    """Let SLURM requeue the job after a preemption or node failure; it resumes from the last checkpoint."""
    ray_start_timeout: int = field(default=600, metadata=positive())
    """Seconds the job waits for every node's GPUs to join the Ray cluster before it gives up."""
    ray_address: str | None = None
    """The ray launcher's cluster: its dashboard address (``http://HEAD:8265``); else ``RAY_ADDRESS``."""
    ray_run_root: str | None = None
    """The ray launcher: where runs write on the cluster (``ROOT/EXP/runs/RUN``); by default the run's own path."""
    ray_forward_secrets: bool = False
    """The ray launcher: send the values of WANDB_API_KEY, HF_TOKEN, … with the job (Ray keeps them in
    its job table); by default they go by name and the cluster's nodes supply them."""

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass
class TrackingConfig:
    project: str = "fipo"
    entity: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    run_name: str | None = None
    group: str | None = None
    """W&B run group; a sweep sets it to the sweep's name."""
    tags: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    name: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    verl: dict[str, Any] = field(default_factory=dict)
    """Any other verl key by its full path, as Hydra writes overrides (``KEY``, ``+KEY``, ``~KEY``),
    applied after fipo's own mapping (fipo_cli/verl_adapter/verl_keys.py)."""

    @property
    def max_tokens(self) -> int:
        """Prompt plus response: the launcher's token budget per GPU and per vLLM batch."""
        return self.data.max_prompt_length + self.data.max_response_length

    def asset_paths(self) -> list[str]:
        """Every model or data path the run reads (``builtin:`` ones are built before it starts)."""
        return [self.model.path, *self.data.train_files, *self.data.val_files]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ----------------------------------------------------------------------------- building


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    if origin in (types.UnionType, typing.Union):
        return " or ".join("null" if arg is type(None) else _type_name(arg) for arg in typing.get_args(annotation))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return "a mapping of dotted verl keys to values"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(annotation, str(annotation))


def _matches(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Whether ``value`` fits ``annotation``, and the value converted (ints to floats)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation), value
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(annotation):
            if value is None and arg is type(None):
                return True, None
            if arg is not type(None):
                ok, converted = _matches(value, arg)
                if ok:
                    return True, converted
        return False, value
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            return False, value
        converted = []
        for item in value:
            ok, item_value = _matches(item, item_type)
            if not ok:
                return False, value
            converted.append(item_value)
        return True, converted
    if origin is dict:
        ok = isinstance(value, Mapping) and all(isinstance(key, str) for key in value)
        return ok, dict(value) if ok else value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number, float(value) if number else value
    if annotation is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported schema type {annotation!r}")


def _violates(value: Any, rule: dict[str, Any]) -> str | None:
    if value is None:
        return None
    check, bound = rule["rule"], rule["bound"]
    if check == "> 0" and not value > 0:
        return "must be > 0"
    if check == "> 1" and not value > 1:
        return "must be > 1"
    if check == ">=" and not value >= bound:
        return f"must be ≥ {bound:g}"
    if check == "(0, 1]" and not 0 < value <= 1:
        return "must lie in (0, 1]"
    return None


class _Problems(list):
    """Problem lines, plus the dotted keys they are about (cross-checks skip those)."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()

    def add(self, key: str, line: str) -> None:
        self.keys.add(key)
        self.append(line)

    def clean(self, *keys: str) -> bool:
        return not self.keys.intersection(keys)


def _build(cls: type, raw: Any, prefix: str, problems: _Problems) -> Any:
    if not isinstance(raw, Mapping):
        problems.add(prefix.rstrip("."), f"{prefix.rstrip('.') or 'the config'}: expected a mapping of keys, got {raw!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            problems.append(unknown_key_problem(f"{prefix}{key}", (), "known key", suggest_key(f"{prefix}{key}")))
    values = {}
    for name, spec in fields.items():
        if name not in raw:
            continue
        annotation, value, dotted = hints[name], raw[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(annotation):
            values[name] = _build(annotation, value, f"{dotted}.", problems)
            continue
        out_of_range = number_problem(dotted, value)
        if out_of_range:
            problems.add(dotted, out_of_range)
            continue
        ok, converted = _matches(value, annotation)
        if not ok:
            problems.add(dotted, f"{dotted}={value!r}: expected {_type_name(annotation)}")
            continue
        broken = _violates(converted, spec.metadata) if spec.metadata else None
        if broken:
            problems.add(dotted, f"{dotted}={value!r}: {broken}")
            continue
        values[name] = converted
    return cls(**values)


def _cross_checks(experiment: Experiment, problems: _Problems) -> None:
    """Checks between keys; a check is skipped when one of its keys already has a problem."""
    if problems.clean("name") and not SAFE_NAME.match(experiment.name):
        problems.add(
            "name",
            f"name={experiment.name!r}: use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(it names a directory and a SLURM job)",
        )
    if problems.clean("model.path") and not experiment.model.path:
        problems.add("model.path", "model.path is required: a Hugging Face id or a local model directory")
    try:
        knobs.resolve(experiment.algorithm.fipo_knobs())
    except ConfigError as error:
        problems.extend(f"algorithm.{problem}" for problem in error.problems)
    data, algorithm, trainer = experiment.data, experiment.algorithm, experiment.trainer
    if (
        problems.clean("algorithm.overlong_buffer_len", "data.max_response_length")
        and algorithm.overlong_buffer
        and algorithm.overlong_buffer_len >= data.max_response_length
    ):
        problems.add(
            "algorithm.overlong_buffer_len",
            f"algorithm.overlong_buffer_len={algorithm.overlong_buffer_len}: must be < data.max_response_length "
            f"({data.max_response_length})",
        )
    if problems.clean("trainer.mini_batch_size", "data.train_batch_size") and data.train_batch_size % trainer.mini_batch_size:
        problems.add(
            "trainer.mini_batch_size",
            f"trainer.mini_batch_size={trainer.mini_batch_size}: must divide data.train_batch_size "
            f"({data.train_batch_size})",
        )
    reward_function = algorithm.reward_function
    if problems.clean("algorithm.reward_function") and reward_function is not None and not REWARD_FUNCTION.match(reward_function):
        problems.add(
            "algorithm.reward_function",
            f"algorithm.reward_function={reward_function!r}: use MODULE:FUNCTION (e.g. fipo_cli.toy_task:compute_score) "
            "or FILE.py:FUNCTION",
        )
    for key, paths in (("model.path", [experiment.model.path]), ("data.train_files", data.train_files),
                       ("data.val_files", data.val_files)):
        for path in paths:
            builtin_problem = local_assets.problem(path)
            if builtin_problem and problems.clean(key):
                problems.add(key, f"{key}: {builtin_problem}")
    if problems.clean("trainer.device", "rollout.engine") and trainer.device == "cpu" and experiment.rollout.engine != "vllm":
        problems.add(
            "rollout.engine",
            f"rollout.engine={experiment.rollout.engine!r}: trainer.device cpu rolls out with vLLM's CPU build; "
            "set rollout.engine: vllm",
        )
    _parallelism_checks(experiment, problems)
    _verl_section_checks(experiment, problems)
    time_limit = experiment.cluster.time_limit
    if problems.clean("cluster.time_limit") and time_limit is not None and not TIME_LIMIT.match(time_limit):
        problems.add(
            "cluster.time_limit",
            f"cluster.time_limit={time_limit!r}: use SLURM's form, e.g. 2-00:00:00, 12:00:00 or minutes",
        )


def sequence_parallel_problem(sequence_parallel_size: int, attention: str) -> str:
    """Why ``attention`` cannot train with Ulysses sequence parallelism of this size in verl 0.9.1."""
    return (
        f"trainer.sequence_parallel_size={sequence_parallel_size} needs flash-attention 2, not {attention}: "
        "verl 0.9.1 splits attention across GPUs only inside transformers' flash-attention forward "
        "(verl/models/transformers/monkey_patch.py), so with sdpa or eager each GPU would attend within its "
        "own slice of the sequence"
    )


def _parallelism_checks(experiment: Experiment, problems: _Problems) -> None:
    """What verl 0.9.1's FSDP engine needs of the attention and padding for the chosen parallelism."""
    model, trainer = experiment.model, experiment.trainer
    attention, parallel = model.attn_implementation, trainer.sequence_parallel_size
    if problems.clean("model.attn_implementation", "trainer.device") and trainer.device == "cpu" \
            and attention == "flash_attention_2":
        problems.add("model.attn_implementation", "model.attn_implementation='flash_attention_2': flash-attention 2 "
                     "runs on CUDA GPUs only; with trainer.device cpu use auto or sdpa")
    if problems.clean("model.attn_implementation", "trainer.sequence_parallel_size") and parallel > 1 \
            and attention in ("sdpa", "eager"):
        problems.add("model.attn_implementation", f"model.attn_implementation={attention!r}: "
                     + sequence_parallel_problem(parallel, attention) + "; use flash_attention_2 or auto, or set it to 1")
    if problems.clean("model.remove_padding", "trainer.sequence_parallel_size") and parallel > 1 and not model.remove_padding:
        problems.add("model.remove_padding", f"model.remove_padding=False: trainer.sequence_parallel_size={parallel} "
                     "needs it (verl 0.9.1's FSDP engine refuses sequence parallelism on padded batches)")


def known_keys() -> list[str]:
    """Every dotted key of the schema (leaves only)."""

    def walk(cls: type, prefix: str) -> list[str]:
        keys = []
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            annotation = hints[spec.name]
            if dataclasses.is_dataclass(annotation):
                keys.extend(walk(annotation, f"{prefix}{spec.name}."))
            else:
                keys.append(f"{prefix}{spec.name}")
        return keys

    return walk(Experiment, "")


def suggest_key(key: str) -> str | None:
    """The schema key an unknown ``key`` most likely means: an alias or a synonym of its last part
    (``trainer.learning_rate`` → ``trainer.lr``), the same last part in another section
    (``algorithm.lr`` → ``trainer.lr``), else the closest spelling, in its own section first."""
    known = known_keys()
    section, _, leaf = key.rpartition(".")
    for table in (KEY_ALIASES, SYNONYMS):  # an alias is no key in a YAML file, nor in a section
        if leaf in table:
            return table[leaf]
    same_leaf = [name for name in known if name.rpartition(".")[2] == leaf]
    if same_leaf:
        return same_leaf[0]
    siblings = [name for name in known if name.startswith(f"{section}.")] if section else [*KEY_ALIASES, *known]
    close = difflib.get_close_matches(key, siblings, n=1) or difflib.get_close_matches(key, known, n=1)
    return close[0] if close else None


def canonical_key(key: str) -> str:
    """The key an override sets: an alias's dotted key, an official verl spelling's fipo key, else ``key``."""
    if key.startswith(VERL_PREFIX):
        path = _verl_path(key[len(VERL_PREFIX):])
        return OFFICIAL_SPELLINGS.get(path, key) if path else key
    return KEY_ALIASES.get(key, key)


def _verl_path(written: Any) -> str | None:
    """The dotted path of a verl key as written (``+a.b`` → ``a.b``); None if it is not one."""
    match = VERL_KEY.match(written) if isinstance(written, str) else None
    return match.group(2) if match else None


def _route_official_spellings(updated: dict[str, Any], problems: _Problems) -> None:
    """Move the ``verl:`` section's official spellings of fipo keys (:data:`OFFICIAL_SPELLINGS`) to those keys."""
    verl = updated.get("verl")
    if not isinstance(verl, dict):
        return
    for written in [key for key in verl if isinstance(key, str)]:
        match = VERL_KEY.match(written)
        target = OFFICIAL_SPELLINGS.get(match.group(2)) if match else None
        if target is None:
            continue
        value = verl.pop(written)
        if match.group(1) == "~":
            problems.add(target, f"verl: {written!r} would delete {target}, which fipo always sets; set {target} instead")
            continue
        section, leaf = target.split(".")
        node = updated.setdefault(section, {})
        if isinstance(node, dict):
            if leaf in node:
                problems.add(target, f"{target} is set twice: as {target} and as verl {written!r} (its official spelling)")
            node[leaf] = value


#: The two spellings of the influence-weight bounds; an override in one replaces the file's other one.
_CLIP_VOCABULARIES = (
    ("algorithm.future_kl_clip_low", "algorithm.future_kl_clip_high"),
    ("algorithm.future_kl_clip_ratio", "algorithm.future_kl_clip_high_only"),
)


def _apply_overrides(raw: Mapping[str, Any], assignments: Mapping[str, Any], problems: _Problems) -> dict[str, Any]:
    """A copy of ``raw`` with dotted-key assignments (aliases and ``verl.KEY`` allowed) applied; unknown and
    retired keys are problems. A ``verl.KEY`` in an official spelling of a fipo key sets that key."""
    known = known_keys()
    updated = copy.deepcopy(dict(raw))
    _route_official_spellings(updated, problems)
    given: dict[str, str] = {}  # dotted key -> the assignment that set it
    for key, value in assignments.items():
        if key.startswith(VERL_PREFIX):
            written = key[len(VERL_PREFIX):]
            match = VERL_KEY.match(written)
            if not match:
                problems.add(key, f"{key!r}: after 'verl.' comes a verl key as Hydra writes it: a dotted path, "
                                  "with + to add a key or ~ to delete one (verl.+KEY=VALUE, verl.~KEY)")
                continue
            dotted = OFFICIAL_SPELLINGS.get(match.group(2))
            if dotted is None:
                verl = updated.setdefault("verl", {})
                if isinstance(verl, dict):
                    for earlier in [k for k in verl if _verl_path(k) == match.group(2)]:
                        del verl[earlier]  # the command line's spelling of this key replaces the file's
                    verl[written] = value
                continue
            if match.group(1) == "~":
                problems.add(key, f"{key!r} would delete {dotted}, which fipo always sets; set {dotted} instead")
                continue
        elif key.startswith(("+verl.", "~verl.", "++verl.")):
            sign = key[: key.index("verl.")]
            problems.add(key, f"{key!r}: the sign goes after the prefix: verl.{sign}{key[len(sign) + 5:]}")
            continue
        else:
            dotted = KEY_ALIASES.get(key, key)
        if dotted == "verl":
            problems.add(key, f"{key!r}: set verl keys one by one, as verl.KEY=VALUE")
            continue
        if dotted not in known:
            problems.add(key, unknown_key_problem(key, (), "known key", suggest_key(key)))
            continue
        if dotted in RETIRED:
            problems.add(dotted, f"{key}={value!r}: {RETIRED[dotted]}; leave it out")
            continue
        if dotted in given:
            problems.add(dotted, f"{dotted} is set twice, by {given[dotted]!r} and {key!r}")
            continue
        given[dotted] = key
        *sections, leaf = dotted.split(".")
        node = updated
        for section in sections:
            node = node.setdefault(section, {})
            if not isinstance(node, dict):
                problems.add(dotted, f"{section}: expected a mapping of keys, got {node!r}")
                break
        else:
            node[leaf] = value
    for mine, other in (_CLIP_VOCABULARIES, _CLIP_VOCABULARIES[::-1]):
        algorithm = updated.get("algorithm")
        if isinstance(algorithm, dict) and given.keys() & set(mine) and not given.keys() & set(other):
            for dotted in other:  # the file's bounds in the other spelling give way to the command line's
                algorithm.pop(dotted.split(".")[1], None)
    return updated


#: What verl 0.9.1's engine workers assert is set when batches are not dynamic (workers/engine_workers.py, init_model).
MICRO_BATCH_KEYS = ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
                    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu")


def _verl_section_checks(experiment: Experiment, problems: _Problems) -> None:
    """Every key of the ``verl:`` section is written as Hydra writes an override's key, each path once; without
    dynamic batches verl needs micro-batch sizes, which only the section can give."""
    given = {_verl_path(written) for written in experiment.verl}
    missing = [key for key in MICRO_BATCH_KEYS if key not in given]
    if problems.clean("trainer.dynamic_batch_size") and not experiment.trainer.dynamic_batch_size and missing:
        problems.add("trainer.dynamic_batch_size", "trainer.dynamic_batch_size=False: verl 0.9.1 then needs fixed "
                     "micro-batch sizes; set " + " and ".join(f"{VERL_PREFIX}{key}=N" for key in missing))
    paths: dict[str, str] = {}
    for written in experiment.verl:
        match = VERL_KEY.match(written)
        if not match:
            problems.add("verl", f"verl: {written!r} is not a verl key: write a dotted path, with + to add a key "
                                 "or ~ to delete one (for example actor_rollout_ref.rollout.enforce_eager)")
        elif match.group(2) in paths:
            problems.add("verl", f"verl: {match.group(2)} is given twice ({paths[match.group(2)]!r} and {written!r})")
        else:
            paths[match.group(2)] = written


def build(raw: Mapping[str, Any], assignments: Mapping[str, Any] | None = None, source: str = "the config") -> Experiment:
    """Apply overrides to a parsed YAML mapping and validate it, reporting every problem at once."""
    problems = _Problems()
    experiment = _build(Experiment, _apply_overrides(raw, assignments or {}, problems), "", problems)
    _cross_checks(experiment, problems)
    if problems:
        raise ConfigError(
            problems,
            hint=f"fix {source}, or override keys as KEY=VALUE (aliases: {', '.join(KEY_ALIASES)})",
        )
    return experiment


def read_yaml(path: Path) -> dict[str, Any]:
    """The mapping in a YAML file; a missing or unparsable file is a usage error."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file", hint="create an experiment with `fipo init NAME --model MODEL`")
    try:
        raw = yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: not valid YAML ({error})"]) from error
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError([f"{path}: expected a mapping of keys at the top, got {type(raw).__name__}"])
    return raw or {}


#: The keys a user's cluster profile may set: where jobs go, not what they train.
PROFILE_KEYS = (
    "partition", "account", "qos", "time_limit", "constraint", "gpus_per_node", "cpus_per_task", "setup", "extra_sbatch",
    "requeue", "ray_start_timeout", "ray_address", "ray_run_root", "ray_forward_secrets",
)


def cluster_profile_path(env: Mapping[str, str] | None = None) -> Path:
    """``$FIPO_CLUSTER_CONFIG``, else ``$XDG_CONFIG_HOME/fipo/cluster.yaml`` (``~/.config/fipo/cluster.yaml``)."""
    env = os.environ if env is None else env
    if env.get("FIPO_CLUSTER_CONFIG"):
        return Path(env["FIPO_CLUSTER_CONFIG"]).expanduser()
    return Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "fipo" / "cluster.yaml"


def read_cluster_profile(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The user's cluster profile (a flat mapping of cluster keys), or {} when there is none.

    Its values are checked with the experiment's; unknown keys are refused here, naming the file.
    """
    path = cluster_profile_path(env)
    if not path.is_file():
        return {}
    raw = read_yaml(path)
    unknown = [unknown_key_problem(str(key), PROFILE_KEYS, f"cluster profile key (in {path})")
               for key in raw if key not in PROFILE_KEYS]
    if unknown:
        raise ConfigError(unknown, hint=f"a cluster profile sets only: {', '.join(PROFILE_KEYS)}")
    return raw


def read_experiment(path: Path) -> dict[str, Any]:
    """An experiment file's mapping on top of the user's cluster profile, not yet validated.

    The profile fills the experiment's ``cluster`` section; keys the experiment sets win.
    """
    raw = read_yaml(path)
    profile = read_cluster_profile()
    if profile:
        cluster = raw.get("cluster")
        raw = {**raw, "cluster": {**profile, **cluster} if isinstance(cluster, Mapping) else cluster or profile}
    return raw


def load(path: Path, assignments: Mapping[str, Any] | None = None) -> Experiment:
    """Load, override and validate an experiment file (command-line assignments win over the file)."""
    return build(read_experiment(path), assignments, source=str(path))
