"""An official FIPO/DAPO launcher's overrides in fipo's terms: ``fipo init NAME --from-launcher SCRIPT``.

Each override of the launcher's trainer command is, in order of preference:

* mapped to the fipo key that sets it (the inverse of :mod:`fipo_cli.verl_adapter.overrides`, official
  spellings included: the ``+…policy_loss.*`` knobs, ``reward_model.overlong_buffer.*`` (verl 0.9.1's
  reward kwargs), ``optim.warmup_style`` (``trainer.lr_scheduler``)), or found to be implied by one;
* kept verbatim in the experiment's ``verl:`` section, when fipo has no key for it;
* dropped, with why: keys verl 0.9.1 ignores, fipo's own run layout, what fipo does itself.

Values that depend on the environment the launcher runs in (``${HOME}`` in a path, ``NNODES``) are
not taken: the recipe's value stays, with a comment naming the variable and the launcher's default.
The official run's length is carried over in steps: its epoch was ⌊rows / data.gen_batch_size⌋
generation rounds (verl 0.5's DAPO trainer), which verl 0.9.1 would count differently
(:mod:`fipo_cli.training.horizon` explains), so the experiment gets ``trainer.total_training_steps``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

from fipo_cli.core.errors import UsageError
from fipo_cli.experiment import config, recipes
from fipo_cli.experiment.launcher_script import LauncherScript, Override
from fipo_cli.experiment.overrides import parse_value
from fipo_cli.loss import knobs
from fipo_cli.verl_adapter.verl_keys import ACTOR, FIPO_KEY_OF, OVERLONG, ROLLOUT

Outcome = Literal["mapped", "verbatim", "dropped", "environment"]
#: DAPO-Math-17k as published (BytedTsinghua-SIA/DAPO-Math-17k, dapo-math-17k.parquet): 17,917 prompts,
#: each repeated 100 times. The official launchers train on this file.
PUBLISHED_ROWS = {"dapo-math-17k.parquet": 1_791_700}
#: The official AIME 2024 validation file repeats each of its 30 problems 32 times (with val n=1).
REPEATED_VALIDATION = {"aime-2024.parquet": 32}
#: fipo keys that hold lists.
LIST_KEYS = ("data.train_files", "data.val_files")
LEGACY_REWARD = ("verl 0.9.1's main_ppo reads no legacy reward_model section (only its fully-async trainer "
                 "migrates it; verl/experimental/reward_loop/reward_loop.py)")


@dataclass(frozen=True)
class Row:
    """One line of the import report."""

    outcome: Outcome
    written: str  # the override as the launcher writes it
    detail: str


@dataclass
class Imported:
    """The launcher in fipo's terms (fipo keys → value and comment; verl keys kept verbatim)."""

    script: LauncherScript
    model: str
    algorithm: str
    fipo: dict[str, tuple[Any, str]] = field(default_factory=dict)
    verl: dict[str, tuple[Any, str]] = field(default_factory=dict)
    commented: dict[str, str] = field(default_factory=dict)  # fipo or verl key -> comment, value not taken
    rows: list[Row] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(row.outcome == outcome for row in self.rows)


def _text(override: Override) -> str:
    return override.value.text if override.value else ""


def _typed(override: Override) -> Any:
    return parse_value(_text(override)) if override.value else None


def _environment_note(override: Override) -> str:
    names = ", ".join(name for name in override.value.env if not name.startswith("$("))
    return f"launcher: {override.written.strip()} = {override.value.text!r} here ({names} from its environment)"


class _Importer:
    def __init__(self, script: LauncherScript, model: str | None, algorithm: str | None) -> None:
        self.script = script
        self.by_path = {override.key.lstrip("+~"): override for override in script.overrides}
        self.model = model
        self.algorithm = algorithm
        self.result: Imported | None = None

    # -- recording
    def mapped(self, override: Override, key: str, value: Any, detail: str = "") -> None:
        if key in LIST_KEYS and not isinstance(value, list):
            value = [value]  # verl takes one file as a string, fipo's schema a list
        self.result.fipo[key] = (value, f"launcher: {override.written.strip()}")
        self.result.rows.append(Row("mapped", override.written, f"{key}: {_shown(value)}" + (f" ({detail})" if detail else "")))

    def implied(self, override: Override, by: str) -> None:
        self.result.rows.append(Row("mapped", override.written, f"implied by {by}"))

    def dropped(self, override: Override, why: str) -> None:
        self.result.rows.append(Row("dropped", override.written, why))

    def environment(self, override: Override, key: str) -> None:
        self.result.commented[key] = _environment_note(override)
        self.result.rows.append(Row("environment", override.written,
                                    f"{key}: not taken, it depends on {', '.join(override.value.env)}; "
                                    "the recipe's value stays (set it in the file)"))

    def verbatim(self, override: Override) -> None:
        if override.value is not None and override.value.environment_dependent:
            self.result.commented[f"verl.{override.key}"] = _environment_note(override)
            self.result.rows.append(Row("environment", override.written,
                                        f"verl: {override.key} not taken, it depends on {', '.join(override.value.env)}"))
            return
        self.result.verl[override.key] = (_typed(override), f"launcher: {override.written.strip()}")
        self.result.rows.append(Row("verbatim", override.written, f"verl: {override.key}"))

    # -- the import
    def run(self) -> Imported:
        loss_mode = self.by_path.get(f"{ACTOR}.policy_loss.loss_mode")
        algorithm = self.algorithm or ("fipo" if loss_mode and _text(loss_mode) == "future_kl" else "dapo")
        model = self.model or _recipe_model(self.by_path.get("actor_rollout_ref.model.path"))
        self.result = Imported(self.script, model, algorithm)
        for override in self.script.overrides:
            self.one(override)
        self.horizon()
        self.validation()
        if self.script.submitted_to_ray:  # its Ray cluster's address comes from its environment (RAY_ADDRESS)
            self.result.commented["cluster.launcher"] = ("launcher: ray job submit ... -- to its RAY_ADDRESS: "
                                                         "`--launcher ray` with cluster.ray_address does the same")
        return self.result

    def one(self, override: Override) -> None:
        path = override.key.lstrip("+~")
        if override.key.startswith("~"):
            self.verbatim(override)
            return
        if path in config.OFFICIAL_SPELLINGS:
            self.mapped(override, config.OFFICIAL_SPELLINGS[path], _typed(override))
            return
        handler = SPECIAL.get(path)
        if handler is not None:
            handler(self, override)
            return
        if path.startswith("reward_model.reward_kwargs."):
            self.legacy_reward_kwargs(override, path.removeprefix("reward_model."))
            return
        if path.startswith(("reward_model.", "custom_reward_function.", "sandbox_fusion.")):
            self.dropped(override, LEGACY_REWARD)
            return
        owner = FIPO_KEY_OF.get(path)
        if owner is None:
            if path in IMPLIED:
                self.implied_or_verbatim(override, *IMPLIED[path])
            else:
                self.verbatim(override)
            return
        fipo_key = owner.split(" ", 1)[0]
        if fipo_key not in config.known_keys():
            self.own(override, owner)
            return
        if override.value.environment_dependent:
            self.environment(override, fipo_key)
            return
        self.mapped(override, fipo_key, _typed(override))

    def own(self, override: Override, owner: str) -> None:
        """A key fipo sets itself: the launcher's value is fipo's, or dropped with why."""
        path = override.key.lstrip("+~")
        expected = OWN_VALUES.get(path)
        if expected is not None and _typed(override) in expected:
            self.implied(override, owner)
        else:
            self.dropped(override, f"fipo sets it itself: {owner}")

    def implied_or_verbatim(self, override: Override, source: str, why: str) -> None:
        """A verl key verl 0.9.1 derives from another (``source``): implied when it agrees."""
        other = self.by_path.get(source)
        if other is not None and _text(other) == _text(override):
            self.implied(override, f"{source} ({why})")
        else:
            self.verbatim(override)

    def legacy_reward_kwargs(self, override: Override, path: str) -> None:
        """``+reward_model.reward_kwargs.*`` (the DAPO launchers' spelling) → the reward keys fipo maps."""
        leaf = path.removeprefix("reward_kwargs.")
        target = {"overlong_buffer_cfg.enable": "algorithm.overlong_buffer",
                  "overlong_buffer_cfg.len": "algorithm.overlong_buffer_len",
                  "overlong_buffer_cfg.penalty_factor": "algorithm.overlong_penalty_factor"}.get(leaf)
        if target:
            self.mapped(override, target, _typed(override))
        elif leaf == "max_resp_len":
            self.max_resp_len(override)
        elif leaf == "overlong_buffer_cfg.log":
            self.dropped(override, "fipo always logs the overlong reward")
        else:
            self.dropped(override, LEGACY_REWARD)

    def max_resp_len(self, override: Override) -> None:
        length = self.by_path.get("data.max_response_length")
        if length is not None and _text(length) == _text(override):
            self.implied(override, "data.max_response_length (fipo passes it to the reward manager)")
        else:
            self.dropped(override, "fipo gives the reward manager data.max_response_length")

    def horizon(self) -> None:
        """The official run's length, in verl 0.9.1's steps."""
        steps = self.by_path.get("trainer.total_training_steps")
        epochs = self.by_path.get("trainer.total_epochs")
        generation = self.by_path.get("data.gen_batch_size") or self.by_path.get("data.train_batch_size")
        train_file = self.by_path.get("data.train_files")
        rows = PUBLISHED_ROWS.get(PurePosixPath(_text(train_file).strip("[]'\" ")).name) if train_file else None
        official_epochs = _typed(epochs) if epochs else 30  # verl's default trainer.total_epochs
        round_size = _typed(generation) if generation else None
        for override in (steps, epochs):
            if override is not None:
                self.result.rows = [row for row in self.result.rows if row.written != override.written]
        if rows and isinstance(round_size, int) and isinstance(official_epochs, int):
            rounds = official_epochs * (rows // round_size)
            total = min(rounds, _typed(steps)) if steps else rounds
            how = (f"{official_epochs} × ⌊{rows:,} rows / {round_size:,} prompts a generation round⌋ = {rounds:,} rounds"
                   + (f", capped by trainer.total_training_steps {_typed(steps)}" if steps and _typed(steps) < rounds else ""))
            self.result.fipo["trainer.total_training_steps"] = (total, f"launcher: the official run's horizon, {how}")
            self.result.fipo["trainer.total_epochs"] = (None, "fipo: no epoch limit (verl's data loader wraps around)")
            for override in (steps, epochs):
                if override is not None:
                    self.result.rows.append(Row("mapped", override.written, f"trainer.total_training_steps: {total} ({how})"))
            if steps is None and epochs is None:
                self.result.rows.append(Row("mapped", "(verl's default trainer.total_epochs 30)",
                                            f"trainer.total_training_steps: {total} ({how})"))
            return
        if steps is not None:
            self.mapped(steps, "trainer.total_training_steps", _typed(steps))
        if epochs is not None:
            self.mapped(epochs, "trainer.total_epochs", _typed(epochs),
                        "verl 0.9.1 counts an epoch as rows // data.train_batch_size steps, the official trainer as "
                        "rows // data.gen_batch_size rounds: check the horizon `fipo train --dry-run` shows")

    def validation(self) -> None:
        """The official validation file repeats each problem; fipo's holds each once and samples more."""
        test_file = self.by_path.get("data.val_files")
        samples = self.by_path.get(f"{ROLLOUT}.val_kwargs.n")
        repeats = REPEATED_VALIDATION.get(PurePosixPath(_text(test_file).strip("[]'\" ")).name) if test_file else None
        if repeats and samples is not None and test_file.value.environment_dependent and _typed(samples) == 1:
            self.result.fipo["rollout.val_n"] = (repeats, f"launcher: {samples.written.strip()} over its aime-2024.parquet, "
                                                          f"which holds each problem {repeats} times; fipo's holds each once")
            self.result.rows = [row for row in self.result.rows if row.written != samples.written]
            self.result.rows.append(Row("mapped", samples.written, f"rollout.val_n: {repeats} (the official file repeats "
                                                                   f"each problem {repeats} times; fipo's AIME file does not)"))


def _shown(value: Any) -> str:
    return "null" if value is None else str(value)


def _recipe_model(path_override: Override | None) -> str:
    """The recipe whose model the launcher trains: its model path's last part names one."""
    if path_override is not None:
        name = PurePosixPath(_text(path_override)).name.lower()
        for model in recipes.MODELS:
            recipe_path = config.load(recipes.recipe_path(model)).model.path
            if PurePosixPath(recipe_path).name.lower() == name:
                return model
    shown = _text(path_override) if path_override else "(not set)"
    raise UsageError(f"--from-launcher: the launcher's actor_rollout_ref.model.path {shown} names no recipe's model",
                     hint=f"add --model with the recipe to start from: {', '.join(recipes.MODELS)}")


def _loss_mode(importer: _Importer, override: Override) -> None:
    mode = _text(override)
    if mode not in ("future_kl", "vanilla"):
        importer.dropped(override, f"fipo trains the future_kl (fipo) or vanilla (dapo) loss, not {mode}")
    else:
        importer.implied(override, f"algorithm.name {importer.result.algorithm}")


def _scheduler(importer: _Importer, override: Override) -> None:
    style = _text(override)
    if style in ("constant", "cosine"):
        importer.mapped(override, "trainer.lr_scheduler", style)
    else:
        importer.dropped(override, f"trainer.lr_scheduler is constant or cosine, not {style}")


def _kl_loss(importer: _Importer, override: Override) -> None:
    use = _typed(override)
    coefficient = importer.by_path.get(f"{ACTOR}.kl_loss_coef")
    if use is False:
        importer.result.fipo["algorithm.kl_loss_coef"] = (0.0, f"launcher: {override.written.strip()}")
        importer.implied(override, "algorithm.kl_loss_coef 0 (the KL loss is on when it is > 0)")
    elif coefficient is None:
        importer.dropped(override, "the KL loss needs its coefficient: set algorithm.kl_loss_coef")
    else:
        importer.implied(override, "algorithm.kl_loss_coef > 0")


def _kl_loss_coef(importer: _Importer, override: Override) -> None:
    use = importer.by_path.get(f"{ACTOR}.use_kl_loss")
    if use is not None and _typed(use) is False:
        importer.dropped(override, "the launcher's use_kl_loss=False switches the KL loss off whatever its coefficient")
    else:
        importer.mapped(override, "algorithm.kl_loss_coef", _typed(override))


def _logger(importer: _Importer, override: Override) -> None:
    loggers = _typed(override)
    loggers = loggers if isinstance(loggers, list) else [loggers]
    others = [name for name in loggers if name not in ("console", "wandb")]
    mode = "auto" if "wandb" in loggers else "disabled"
    importer.mapped(override, "tracking.mode", mode, "fipo logs to the console and metrics.jsonl always"
                    + (f"; not kept: {', '.join(map(str, others))}" if others else ""))


def _reward_manager(importer: _Importer, override: Override) -> None:
    if _text(override) == "dapo":
        importer.implied(override, "fipo's reward (DAPO's reward manager)")
    else:
        importer.dropped(override, f"fipo trains with DAPO's reward manager, not {_text(override)}")


def _retired(key: str) -> Callable[[_Importer, Override], None]:
    def handle(importer: _Importer, override: Override) -> None:
        importer.dropped(override, config.RETIRED[key] + ("; the official horizon it set is kept as steps"
                                                          if key == "data.gen_batch_size" else ""))
    return handle


def _chunk_size(importer: _Importer, override: Override) -> None:
    importer.dropped(override, knobs.INERT["chunk_size"])


def _run_layout(importer: _Importer, override: Override) -> None:
    importer.dropped(override, FIPO_KEY_OF[override.key.lstrip("+~")])


def _seed(importer: _Importer, override: Override) -> None:
    importer.mapped(override, "trainer.seed", _typed(override), "fipo seeds the data, the actor and the rollout with it")


def _pass(importer: _Importer, override: Override) -> None:
    """Read with another override (the horizon, the validation samples)."""


def _reward_function(importer: _Importer, override: Override) -> None:
    path = importer.by_path.get("reward.custom_reward_function.path") or importer.by_path.get("custom_reward_function.path")
    name = importer.by_path.get("reward.custom_reward_function.name") or importer.by_path.get("custom_reward_function.name")
    if override.key.lstrip("+").endswith(".name"):
        importer.implied(override, "algorithm.reward_function")
        return
    if path is None or path.value.environment_dependent:
        importer.dropped(override, "set algorithm.reward_function: FILE.py:FUNCTION")
        return
    importer.mapped(override, "algorithm.reward_function", f"{_text(path)}:{_text(name) if name else 'compute_score'}")


#: Overrides read by a handler of their own.
SPECIAL: dict[str, Callable[[_Importer, Override], None]] = {
    f"{ACTOR}.policy_loss.loss_mode": _loss_mode,
    f"{ACTOR}.policy_loss.chunk_size": _chunk_size,
    f"{ACTOR}.optim.warmup_style": _scheduler,
    f"{ACTOR}.optim.lr_scheduler_type": _scheduler,
    f"{ACTOR}.use_kl_loss": _kl_loss,
    f"{ACTOR}.kl_loss_coef": _kl_loss_coef,
    "trainer.logger": _logger,
    "reward_model.reward_manager": _reward_manager,
    "reward.reward_manager.name": _reward_manager,
    "reward.reward_kwargs.max_resp_len": lambda importer, override: importer.max_resp_len(override),
    "data.gen_batch_size": _retired("data.gen_batch_size"),
    "algorithm.filter_groups.max_num_gen_batches": _retired("algorithm.max_num_gen_batches"),
    "trainer.total_training_steps": _pass,
    "trainer.total_epochs": _pass,
    "trainer.default_local_dir": _run_layout,
    "trainer.resume_mode": _run_layout,
    "trainer.experiment_name": lambda importer, override: importer.mapped(override, "tracking.run_name", _text(override)),
    "data.seed": _seed,
    f"{ACTOR}.data_loader_seed": _seed,
    f"{ROLLOUT}.seed": _seed,
    "reward.custom_reward_function.path": _reward_function,
    "reward.custom_reward_function.name": _reward_function,
    "custom_reward_function.path": _reward_function,
    "custom_reward_function.name": _reward_function,
    f"{OVERLONG}.log": lambda importer, override: importer.dropped(override, "fipo always logs the overlong reward"),
}
#: The launcher's values of keys fipo sets itself that agree with what fipo sets.
OWN_VALUES: dict[str, tuple[Any, ...]] = {
    "data.prompt_key": ("prompt",),
    "algorithm.adv_estimator": ("grpo",),
    f"{ROLLOUT}.val_kwargs.do_sample": (True,),
}
#: verl 0.9.1 keys whose default is another key's value: implied when the launcher sets the same.
IMPLIED: dict[str, tuple[str, str]] = {
    "actor_rollout_ref.ref.log_prob_use_dynamic_bsz": (f"{ACTOR}.use_dynamic_bsz", "verl 0.9.1's default"),
    f"{ROLLOUT}.log_prob_use_dynamic_bsz": (f"{ACTOR}.use_dynamic_bsz", "verl 0.9.1's default"),
    "actor_rollout_ref.ref.log_prob_max_token_len_per_gpu": (f"{ACTOR}.ppo_max_token_len_per_gpu", "verl 0.9.1's default"),
    f"{ROLLOUT}.log_prob_max_token_len_per_gpu": (f"{ACTOR}.ppo_max_token_len_per_gpu", "verl 0.9.1's default"),
    "actor_rollout_ref.ref.ulysses_sequence_parallel_size": (f"{ACTOR}.ulysses_sequence_parallel_size",
                                                              "verl 0.9.1's default"),
}


def import_launcher(script: LauncherScript, model: str | None = None, algorithm: str | None = None) -> Imported:
    """The launcher's overrides in fipo's terms, over the recipe of ``model`` (else the one its model path names)."""
    return _Importer(script, model, algorithm).run()
