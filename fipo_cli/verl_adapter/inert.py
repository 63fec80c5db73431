"""fipo keys that verl 0.9.1 ignores under an experiment's other settings.

Each is set to something other than its default but changes nothing the run computes: the plan
warns about it (``fipo train``, its ``--json`` ``warnings``, ``fipo sweep``), and a sweep refuses to
vary it (every point would train the same run). What verl 0.9.1 reads, and where, is in the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fipo_cli.experiment import config
from fipo_cli.loss import knobs

#: The FIPO loss's knobs in the schema (the vanilla DAPO loss reads none of them).
FIPO_KNOBS = ("decay_rate", "gamma", "future_kl_clip_low", "future_kl_clip_high", "future_kl_clip_ratio",
              "future_kl_clip_high_only", "safety_thresh", "future_kl_start", "future_kl_window", "future_kl_average")
CHUNK_SIZE = "actor_rollout_ref.actor.policy_loss.chunk_size"


@dataclass(frozen=True)
class Inert:
    key: str  # a dotted fipo key, or verl.KEY for an entry of the verl: section
    value: Any
    why: str

    def warning(self) -> str:
        return f"{self.key}={self.value!r} does nothing: {self.why}"


def _changed(section: Any, default: Any, names: tuple[str, ...]) -> list[tuple[str, Any]]:
    return [(name, getattr(section, name)) for name in names if getattr(section, name) != getattr(default, name)]


def inert_keys(experiment: config.Experiment) -> list[Inert]:
    """The keys of ``experiment`` set away from their defaults that verl 0.9.1 ignores, with why."""
    default = config.Experiment()
    algorithm, data, trainer, rollout = experiment.algorithm, experiment.data, experiment.trainer, experiment.rollout
    found = [Inert(key, value, f"{config.RETIRED[key]}; delete it from the experiment")
             for key, value in (("data.gen_batch_size", data.gen_batch_size),
                                ("algorithm.max_num_gen_batches", algorithm.max_num_gen_batches))
             if value is not None]
    if algorithm.name == "dapo":
        found += [Inert(f"algorithm.{name}", value, "algorithm.name is dapo, whose vanilla policy loss has no Future-KL")
                  for name, value in _changed(algorithm, default.algorithm, FIPO_KNOBS)]
    if not algorithm.dynamic_sampling:
        found += [Inert(f"algorithm.{name}", value, "algorithm.dynamic_sampling is off, so no group is filtered")
                  for name, value in _changed(algorithm, default.algorithm, ("dynamic_sampling_metric",))]
    elif _verl_setting(experiment, "trainer.use_v1") is False:
        found.append(Inert("algorithm.dynamic_sampling", True, "verl.trainer.use_v1=false selects verl 0.9.1's legacy "
                           "trainer (trainer/main_ppo_v0.py), which has no dynamic sampling"))
    if not algorithm.overlong_buffer:
        found += [Inert(f"algorithm.{name}", value, "algorithm.overlong_buffer is off: the DAPO reward manager reads "
                        "the buffer's length and penalty only when it is on")
                  for name, value in _changed(algorithm, default.algorithm, ("overlong_buffer_len", "overlong_penalty_factor"))]
    if not trainer.dynamic_batch_size and trainer.max_tokens_per_gpu is not None:
        found.append(Inert("trainer.max_tokens_per_gpu", trainer.max_tokens_per_gpu, "trainer.dynamic_batch_size is "
                           "off: verl reads the token budget per GPU only for dynamic batches"))
    if trainer.device == "cpu":
        found += [Inert(f"rollout.{name}", value, "vLLM's CPU build sizes its KV cache by VLLM_CPU_KVCACHE_SPACE "
                        "(fipo sets 1 GiB), not by a share of GPU memory")
                  for name, value in _changed(rollout, default.rollout, ("gpu_memory_utilization",))]
    if trainer.test_freq <= 0 and not trainer.val_before_train:
        found += [Inert(f"rollout.{name}", value, "validation never runs (trainer.test_freq ≤ 0 and "
                        "trainer.val_before_train false)")
                  for name, value in _changed(rollout, default.rollout, ("val_n", "val_temperature", "val_top_p"))]
    found += [Inert(f"{config.VERL_PREFIX}{written}", value, knobs.INERT["chunk_size"])
              for written, value in experiment.verl.items() if written.lstrip("+") == CHUNK_SIZE]
    return found


def _verl_setting(experiment: config.Experiment, path: str) -> Any:
    """The value the ``verl:`` section sets ``path`` to (None when it does not)."""
    for written, value in experiment.verl.items():
        if written.lstrip("+") == path:
            return value
    return None

