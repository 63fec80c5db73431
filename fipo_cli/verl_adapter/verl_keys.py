"""Every other verl key: the experiment's ``verl:`` section and ``verl.KEY=VALUE`` overrides.

A key is written as Hydra writes an override's key, and means what Hydra means by it:

    KEY      set a key verl's config has             verl.actor_rollout_ref.rollout.enforce_eager=true
    +KEY     add a key (or set one that exists)       verl.+actor_rollout_ref.model.override_config.rope_theta=1e6
    ~KEY     delete a key                             verl.~actor_rollout_ref.rollout.val_kwargs.top_k

``+KEY`` goes to Hydra as ``++KEY`` ("add or override"): the official launcher's ``+…policy_loss.decay_rate``
was written for a config without the knob and meant "set it"; fipo's plugin defines the knob, where
Hydra's plain ``+`` would fail ("Could not append to config. An item is already at ...").

These overrides come after fipo's own (so they win over verl's defaults and fipo's fixed settings such
as its CPU mode's), and are composed with the installed verl's config like the rest: a key verl does
not have is named with verl's closest key. A key that fipo sets from one of its own keys is refused,
naming that key (two places for one value would disagree); so is a key of the run's layout.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from fipo_cli.experiment.config import VERL_KEY, VERL_PREFIX

if TYPE_CHECKING:
    from omegaconf import DictConfig

ACTOR = "actor_rollout_ref.actor"
ROLLOUT = "actor_rollout_ref.rollout"
OVERLONG = "reward.reward_kwargs.overlong_buffer_cfg"
#: What the run's layout needs: fipo keeps these, whatever the experiment says.
RUN_LAYOUT = "the run's layout (fipo keeps it: experiments/EXP/runs/RUN)"
#: verl keys fipo sets, and the fipo key that sets each (or why fipo owns it).
FIPO_KEY_OF: dict[str, str] = {
    "data.train_files": "data.train_files",
    "data.val_files": "data.val_files",
    "data.prompt_key": "fipo's data format (`fipo data prepare` writes the prompt column)",
    "data.max_prompt_length": "data.max_prompt_length",
    "data.max_response_length": "data.max_response_length",
    "data.train_batch_size": "data.train_batch_size",
    "data.truncation": "data.truncation",
    "data.shuffle": "data.shuffle",
    "data.seed": "trainer.seed",
    "algorithm.adv_estimator": "fipo's algorithm (GRPO group-normalised advantages)",
    "algorithm.use_kl_in_reward": "algorithm.kl_in_reward",
    "algorithm.filter_groups.enable": "algorithm.dynamic_sampling",
    "algorithm.filter_groups.metric": "algorithm.dynamic_sampling_metric",
    "actor_rollout_ref.model.path": "model.path",
    "actor_rollout_ref.model.enable_gradient_checkpointing": "model.gradient_checkpointing",
    "actor_rollout_ref.model.use_remove_padding": "model.remove_padding",
    "actor_rollout_ref.model.override_config.attn_implementation": "model.attn_implementation",
    "actor_rollout_ref.model.override_config.max_position_embeddings": "model.max_position_embeddings",
    f"{ACTOR}.optim.lr": "trainer.lr",
    f"{ACTOR}.optim.lr_warmup_steps": "trainer.lr_warmup_steps",
    f"{ACTOR}.optim.lr_scheduler_type": "trainer.lr_scheduler",
    f"{ACTOR}.optim.warmup_style": "trainer.lr_scheduler",  # verl 0.9.1's deprecated name of lr_scheduler_type
    f"{ACTOR}.optim.weight_decay": "trainer.weight_decay",
    f"{ACTOR}.optim.clip_grad": "trainer.grad_clip",
    f"{ACTOR}.grad_clip": "trainer.grad_clip",  # verl 0.9.1 reads optim.clip_grad; this one is the official spelling
    f"{ACTOR}.ppo_mini_batch_size": "trainer.mini_batch_size",
    f"{ACTOR}.use_dynamic_bsz": "trainer.dynamic_batch_size",
    f"{ACTOR}.ppo_max_token_len_per_gpu": "trainer.max_tokens_per_gpu",
    f"{ACTOR}.ulysses_sequence_parallel_size": "trainer.sequence_parallel_size",
    f"{ACTOR}.fsdp_config.param_offload": "trainer.param_offload",
    f"{ACTOR}.fsdp_config.optimizer_offload": "trainer.optimizer_offload",
    f"{ACTOR}.data_loader_seed": "trainer.seed",
    f"{ACTOR}.clip_ratio_low": "algorithm.clip_ratio_low",
    f"{ACTOR}.clip_ratio_high": "algorithm.clip_ratio_high",
    f"{ACTOR}.clip_ratio_c": "algorithm.clip_ratio_c",
    f"{ACTOR}.loss_agg_mode": "algorithm.loss_agg_mode",
    f"{ACTOR}.entropy_coeff": "algorithm.entropy_coeff",
    f"{ACTOR}.use_kl_loss": "algorithm.kl_loss_coef",
    f"{ACTOR}.kl_loss_coef": "algorithm.kl_loss_coef",
    f"{ACTOR}.policy_loss.loss_mode": "algorithm.name",
    **{f"{ACTOR}.policy_loss.{knob}": f"algorithm.{knob}" for knob in (
        "decay_rate", "gamma", "future_kl_clip_low", "future_kl_clip_high", "future_kl_clip_ratio",
        "future_kl_clip_high_only", "safety_thresh", "future_kl_start", "future_kl_window", "future_kl_average")},
    f"{ROLLOUT}.name": "rollout.engine",
    f"{ROLLOUT}.n": "rollout.n",
    f"{ROLLOUT}.temperature": "rollout.temperature",
    f"{ROLLOUT}.top_p": "rollout.top_p",
    f"{ROLLOUT}.tensor_model_parallel_size": "rollout.tensor_parallel_size",
    f"{ROLLOUT}.gpu_memory_utilization": "rollout.gpu_memory_utilization",
    f"{ROLLOUT}.enable_chunked_prefill": "rollout.chunked_prefill",
    f"{ROLLOUT}.max_num_batched_tokens": "rollout.max_num_batched_tokens",
    f"{ROLLOUT}.seed": "trainer.seed",
    f"{ROLLOUT}.val_kwargs.n": "rollout.val_n",
    f"{ROLLOUT}.val_kwargs.temperature": "rollout.val_temperature",
    f"{ROLLOUT}.val_kwargs.top_p": "rollout.val_top_p",
    f"{ROLLOUT}.val_kwargs.do_sample": "fipo's evaluation protocol (validation samples, as the paper does)",
    "reward.reward_manager.name": "fipo's reward (DAPO's reward manager: the Answer: verifier)",
    "reward.reward_kwargs.max_resp_len": "data.max_response_length",
    f"{OVERLONG}.enable": "algorithm.overlong_buffer",
    f"{OVERLONG}.len": "algorithm.overlong_buffer_len",
    f"{OVERLONG}.penalty_factor": "algorithm.overlong_penalty_factor",
    f"{OVERLONG}.log": "fipo's metrics (the overlong reward is always logged)",
    "reward.custom_reward_function.path": "algorithm.reward_function",
    "reward.custom_reward_function.name": "algorithm.reward_function",
    "trainer.logger": "tracking.mode (fipo logs to the console and metrics.jsonl, and to W&B unless disabled)",
    "trainer.project_name": "tracking.project",
    "trainer.experiment_name": "tracking.run_name",
    "trainer.nnodes": "cluster.nodes",
    "trainer.n_gpus_per_node": "cluster.gpus_per_node",
    "trainer.val_before_train": "trainer.val_before_train",
    "trainer.test_freq": "trainer.test_freq",
    "trainer.save_freq": "trainer.save_freq",
    "trainer.total_epochs": "trainer.total_epochs",
    "trainer.total_training_steps": "trainer.total_training_steps",
    "trainer.device": "trainer.device",
    "trainer.resume_mode": f"{RUN_LAYOUT}; continue a run with `fipo train EXP --resume RUN`",
    "trainer.default_local_dir": f"{RUN_LAYOUT}: checkpoints go to the run's checkpoints/",
    "hydra.run.dir": f"{RUN_LAYOUT}: verl's Hydra files go to the run's hydra/",
    "ray_kwargs.ray_init.runtime_env.env_vars.FIPO_WORKER_ENV": f"{RUN_LAYOUT}: the run's variables for every worker",
}

#: Keys fipo does not pass but maps all the same: the official spellings of keys fipo sets under verl
#: 0.9.1's names (a verl key here would be read by nothing, or fight fipo's value).
OTHER_SPELLINGS = (f"{ACTOR}.grad_clip", f"{ACTOR}.optim.warmup_style")

Operation = Literal["set", "add", "delete"]


@dataclass(frozen=True)
class VerlKey:
    """One entry of the ``verl:`` section."""

    written: str  # as in the section: "+actor_rollout_ref.model.override_config.rope_theta"
    value: Any

    @property
    def path(self) -> str:
        return VERL_KEY.match(self.written).group(2)

    @property
    def operation(self) -> Operation:
        sign = VERL_KEY.match(self.written).group(1)
        return "delete" if sign == "~" else "add" if sign else "set"

    @property
    def option(self) -> str:
        """How the user writes it on the command line."""
        return f"{VERL_PREFIX}{self.written}"


def section_keys(section: Mapping[str, Any]) -> list[VerlKey]:
    return [VerlKey(written, value) for written, value in section.items()]


def _related(path: str, other: str) -> bool:
    """Whether setting ``path`` touches ``other``: the same key, or one holds the other."""
    return path == other or path.startswith(f"{other}.") or other.startswith(f"{path}.")


def collisions(keys: Iterable[VerlKey], fipo_paths: Iterable[str], fixed_paths: Iterable[str] = ()) -> list[str]:
    """Problems for the keys that touch a key fipo sets from one of its own (``fipo_paths``, without
    signs); keys of fipo's fixed settings (``fixed_paths``: its CPU mode) may be overridden."""
    from fipo_cli.experiment.config import known_keys

    schema = set(known_keys())
    fixed = set(fixed_paths)
    mapped = [path for path in fipo_paths if path not in fixed] + list(OTHER_SPELLINGS)
    problems = []
    for key in keys:
        owners = sorted({FIPO_KEY_OF.get(path, "fipo's own settings") for path in mapped if _related(key.path, path)})
        if not owners:
            continue
        fipo_keys = sorted({owner.split(" ", 1)[0] for owner in owners} & schema)
        if len(fipo_keys) > 3:
            problems.append(f"{key.option}: fipo sets keys under it from {len(fipo_keys)} of its own "
                            f"({', '.join(fipo_keys[:3])}, ...); set a key below it")
        elif fipo_keys:
            problems.append(f"{key.option}: fipo sets this from {' and '.join(fipo_keys)}; set that instead")
        else:
            problems.append(f"{key.option}: fipo sets this itself, for {'; '.join(owners)}")
    return problems


def _flat_keys(config: Any, prefix: str = "") -> dict[str, bool]:
    """Every dotted key of a composed config, each with whether it holds a mapping (without resolving)."""
    from omegaconf import DictConfig, ListConfig

    keys: dict[str, bool] = {}
    if isinstance(config, DictConfig):
        for name in config:
            dotted = f"{prefix}{name}"
            child = config._get_node(name)
            keys[dotted] = isinstance(child, DictConfig)
            if isinstance(child, DictConfig | ListConfig) and not child._is_missing() and not child._is_none():
                keys.update(_flat_keys(child, f"{dotted}."))
    elif isinstance(config, ListConfig):
        for index in range(len(config)):
            dotted = f"{prefix}{index}"
            child = config._get_node(index)
            keys[dotted] = isinstance(child, DictConfig)
            if isinstance(child, DictConfig | ListConfig):
                keys.update(_flat_keys(child, f"{dotted}."))
    return keys


def _closest(path: str, known: Mapping[str, bool]) -> str | None:
    """verl's key ``path`` most likely means: a sibling spelled alike, else any key spelled alike
    (never one of its own ancestors)."""
    parent, _, leaf = path.rpartition(".")
    siblings = {key.rpartition(".")[2]: key for key in known if key.rpartition(".")[0] == parent}
    close = difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)
    if close:
        return siblings[close[0]]
    others = [key for key in known if not path.startswith(f"{key}.")]
    close = difflib.get_close_matches(path, others, n=1, cutoff=0.8)
    return close[0] if close else None


def against_config(config: DictConfig, keys: Iterable[VerlKey]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the keys against verl's composed config without them.

    Setting or deleting a key verl's config lacks is a problem, named with verl's closest key. Adding
    one (``+``) is what ``+`` is for, but under a node that is not a free-form mapping (one with a
    ``_target_``, a dataclass of verl's) verl reads no key it does not define: a warning.
    """
    known = _flat_keys(config)
    problems, warnings = [], []
    for key in keys:
        if key.path in known:
            continue
        parent = key.path.rpartition(".")[0]
        close = _closest(key.path, known)
        closest = f"; verl's closest key is {close}" if close else ""
        if key.operation == "add":
            if parent and f"{parent}._target_" in known:
                warnings.append(f"{key.option} adds a key verl's {parent} does not define (its dataclass would "
                                f"refuse or ignore it){closest}")
            continue
        free_form = parent in known and known[parent] and f"{parent}._target_" not in known
        hint = f"; to add it, write {VERL_PREFIX}+{key.path}" if free_form else ""
        problems.append(f"{key.option}: the installed verl's config has no key {key.path}{closest}{hint}")
    return problems, warnings
