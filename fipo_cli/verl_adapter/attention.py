"""The attention verl builds the policy with: ``model.attn_implementation`` (auto | flash_attention_2 | sdpa | eager).

Where verl 0.9.1 reads it: ``actor_rollout_ref.model.override_config.attn_implementation``, passed to
``AutoConfig.from_pretrained`` in ``HFModelConfig.__post_init__`` (``verl/workers/config/model.py``;
``"flash_attention_2"`` when unset, which crashes at model load where ``flash_attn`` is missing). The
reference model is built from a copy of the actor's model config (``verl/workers/engine_workers.py``,
``init_model``), so the one key reaches both. The vLLM rollout reads the same model config but attends
with vLLM's own kernels, which need no ``flash_attn``: the setting does not apply to it.

``auto`` is decided where the model is built, not where fipo runs: on GPUs the override is the
interpolation ``${fipo_auto_attention:SP}``, which fipo's verl plugin registers as an OmegaConf resolver
in every verl process, and which verl resolves in its TaskRunner (``verl/trainer/main_ppo.py``,
``OmegaConf.resolve(config)``), a Ray actor on the cluster. So a login node without flash_attn can
submit a job whose compute nodes have it, and the run gets flash-attention 2 there.

verl 0.9.1 implements Ulysses sequence parallelism for Qwen2-style models only inside transformers'
flash-attention forward (``verl/models/transformers/monkey_patch.py``, ``apply_monkey_patch`` replaces
``transformers.integrations.flash_attention._flash_attention_forward``): with sdpa or eager and
``sequence_parallel_size`` > 1 each GPU would attend within its own slice of the sequence, and train
on wrong log-probabilities without an error. So ``auto`` refuses sdpa there, and the config refuses
``sdpa``/``eager`` with sequence parallelism.
"""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
from dataclasses import dataclass

from fipo_cli.experiment.config import sequence_parallel_problem

AUTO = "auto"
FLASH = "flash_attention_2"
SDPA = "sdpa"
EAGER = "eager"
CHOICES = (AUTO, FLASH, SDPA, EAGER)
#: verl's key; ``+`` because verl's ``override_config`` is an empty mapping.
OVERRIDE = "+actor_rollout_ref.model.override_config.attn_implementation"
RESOLVER = "fipo_auto_attention"
#: Published cost of sdpa against flash-attention 2 in verl (verl-project/verl#7131: GRPO on
#: gemma-4-26B-A4B, FSDP2, remove-padding; throughput 1150 vs 2131 tokens/s, actor update 406 vs 216 s).
SDPA_SLOWDOWN = "about 1.85× slower training steps"
INSTALL_FLASH = "pip install flash-attn --no-build-isolation (a wheel matching torch 2.11 and CUDA; see the README)"


class AttentionError(ValueError):
    """``auto`` found no flash-attention where sequence parallelism needs it."""


def verl_value(choice: str, device: str, sequence_parallel_size: int) -> str:
    """The override's value: a name, or on GPUs for ``auto`` the interpolation the trainer resolves."""
    if choice != AUTO:
        return choice
    if device == "cpu":
        return SDPA  # flash-attention 2 is a CUDA library
    return f"${{{RESOLVER}:{sequence_parallel_size:d}}}"


def flash_attn_import_error() -> str | None:
    """None when ``import flash_attn`` works in this process, else the error it raised (one line).

    An installed flash_attn that was built for another torch or CUDA fails here too, with the
    "undefined symbol" error transformers would hit at model load."""
    try:
        import flash_attn  # noqa: F401
    except Exception as error:  # ImportError, OSError of a broken CUDA extension, ...
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


def decide_auto(sequence_parallel_size: int, import_error: str | None) -> str:
    """``auto``'s choice given whether flash_attn imports (``import_error`` None) where the model is built."""
    if import_error is None:
        return FLASH
    if sequence_parallel_size > 1:
        raise AttentionError(
            f"model.attn_implementation auto: flash_attn does not import here ({import_error}), and "
            + sequence_parallel_problem(sequence_parallel_size, SDPA)
            + f". Install flash-attn on the training nodes ({INSTALL_FLASH}), or set trainer.sequence_parallel_size: 1"
        )
    return SDPA


@functools.cache
def _resolve_auto(sequence_parallel_size: int) -> str:
    choice = decide_auto(int(sequence_parallel_size), flash_attn_import_error())
    print(f"fipo: model.attn_implementation auto -> {choice} in this process", file=sys.stderr, flush=True)
    return choice


def register_resolver() -> None:
    """Register ``${fipo_auto_attention:SP}`` with OmegaConf (once per process; fipo's verl plugin calls it)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _resolve_auto)


@dataclass(frozen=True)
class FlashAttnHere:
    """Whether flash_attn imports in this machine's Python (where fipo runs)."""

    installed: bool
    error: str | None  # None: it imports
    version: str | None = None

    @property
    def imports(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        if self.imports:
            return f"flash_attn {self.version} imports"
        return "flash_attn is not installed" if not self.installed else f"flash_attn does not import ({self.error})"


@functools.cache
def flash_attn_here(python: str = sys.executable) -> FlashAttnHere:
    """Checked without importing it into fipo's process (it imports torch): not installed is found by
    name; an installed one is imported in a child Python, as the trainer would import it."""
    if importlib.util.find_spec("flash_attn") is None:
        return FlashAttnHere(installed=False, error="No module named 'flash_attn'")
    probe = "import flash_attn, sys; sys.stdout.write(getattr(flash_attn, '__version__', '?'))"
    try:
        result = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return FlashAttnHere(installed=True, error=str(error))
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        return FlashAttnHere(installed=True, error=lines[-1] if lines else f"exit code {result.returncode}")
    return FlashAttnHere(installed=True, error=None, version=result.stdout.strip())


@dataclass(frozen=True)
class AttentionPlan:
    """What a run's attention will be, as far as this machine can tell."""

    choice: str
    device: str
    sequence_parallel_size: int
    here: FlashAttnHere | None  # None on CPU (nothing to probe)

    @property
    def decided_by_trainer(self) -> bool:
        return self.choice == AUTO and self.device == "cuda"

    @property
    def here_choice(self) -> str | None:
        """The implementation a trainer on this machine would build with; None if it could not train."""
        if not self.decided_by_trainer:
            return verl_value(self.choice, self.device, self.sequence_parallel_size)
        try:
            return decide_auto(self.sequence_parallel_size, self.here.error if self.here else None)
        except AttentionError:
            return None

    def describe(self) -> str:
        if self.device == "cpu":
            return f"model.attn_implementation {self.choice} -> {verl_value(self.choice, 'cpu', 1)} (trainer.device cpu)"
        here = self.here.describe() if self.here else "not checked"
        if self.choice == FLASH:
            return f"model.attn_implementation {FLASH} (here: {here})"
        if not self.decided_by_trainer:
            return f"model.attn_implementation {self.choice}"
        fallback = f"else {SDPA}" if self.sequence_parallel_size == 1 else \
            f"else the run stops (sequence parallel {self.sequence_parallel_size} needs flash-attention 2)"
        outcome = self.here_choice or "could not train"
        return (f"model.attn_implementation auto: {FLASH} where flash_attn imports in verl's trainer process on the "
                f"cluster, {fallback}; on this machine: {here} -> {outcome}")

    def to_json(self) -> dict[str, object]:
        return {
            "setting": self.choice,
            "verl_value": verl_value(self.choice, self.device, self.sequence_parallel_size),
            "decided_by_trainer": self.decided_by_trainer,
            "flash_attn_here": None if self.here is None else self.here.describe(),
            "here": self.here_choice,
        }


def plan(experiment) -> AttentionPlan:
    """The attention plan of an experiment (a :class:`fipo_cli.experiment.config.Experiment`), probing this machine."""
    device = experiment.trainer.device
    return AttentionPlan(
        choice=experiment.model.attn_implementation,
        device=device,
        sequence_parallel_size=experiment.trainer.sequence_parallel_size,
        here=None if device == "cpu" else flash_attn_here(),
    )
