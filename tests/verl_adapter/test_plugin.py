"""fipo's verl plugin inside the installed verl 0.9.1: the `future_kl` loss (registry, hydra config, loss path)
and the whole-batch length metrics on verl's own data metrics and loggers."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import pieces

pieces.require('verl')
import torch
import verl
import yaml
from omegaconf import OmegaConf
from tensordict import TensorDict
from verl import DataProto
from verl.trainer.ppo import metric_utils
from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla, get_policy_loss_fn
from verl.utils import tensordict_utils as tu
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.utils.losses import ppo_loss

from fipo_cli.loss import knobs
from fipo_cli.loss.fipo import PPOClip, fipo_policy_loss
from fipo_cli.loss.length_metrics import LENGTH_WEIGHTED_ADVANTAGE, PERCENTILES
from fipo_cli.verl_adapter import compose as verl_compose
from fipo_cli.verl_adapter import plugin as verl_plugin

import wandb_records
from naive import naive_fipo_loss, naive_mini_batch_token_mean

PROMPT, RESPONSE = 6, 16

ACTOR = "actor_rollout_ref.actor"


REPO = Path(__file__).resolve().parents[2]


OFFICIAL_LAUNCHER_OVERRIDES = [
    f"{ACTOR}.policy_loss.loss_mode=future_kl",
    f"{ACTOR}.policy_loss.decay_rate=32.0",
    f"{ACTOR}.policy_loss.chunk_size=128",
    f"{ACTOR}.policy_loss.future_kl_start=include_current",
    f"{ACTOR}.policy_loss.future_kl_window=-1",
    f"{ACTOR}.policy_loss.future_kl_average=False",
    f"{ACTOR}.policy_loss.future_kl_clip_ratio=0.2",
    f"{ACTOR}.policy_loss.future_kl_clip_high_only=True",
    f"{ACTOR}.policy_loss.safety_thresh=10.0",
    f"{ACTOR}.clip_ratio_c=10.0",
]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    env.update(RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def run_python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path, env=clean_env(**env), capture_output=True, text=True, timeout=300,
    )


def dict_config(**policy_loss):
    return OmegaConf.create(
        {
            "clip_ratio": 0.2, "clip_ratio_low": 0.2, "clip_ratio_high": 0.28, "clip_ratio_c": 10.0,
            "loss_agg_mode": "token-mean", "global_batch_info": {},
            "policy_loss": {"loss_mode": "future_kl", **policy_loss},
        }
    )


def batch(seed, batch_size=6, length=40):
    generator = torch.Generator().manual_seed(seed)
    old = -torch.rand(batch_size, length, generator=generator) * 2
    new = old + 0.4 * torch.randn(batch_size, length, generator=generator)
    new[:, 3] = old[:, 3] + 3.0  # r ≈ 20 > c: one dual-clip firing per negative-advantage row
    adv = torch.randn(batch_size, 1, generator=generator).expand(batch_size, length).clone()
    lengths = torch.randint(5, length + 1, (batch_size,), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    return old, new, adv, mask


def test_fresh_import_of_verl_registers_future_kl(tmp_path):
    # Run outside the repository so nothing but the installed entry point can register it.
    result = run_python(
        """
        import verl
        from verl.trainer.ppo.core_algos import get_policy_loss_fn
        print(get_policy_loss_fn("future_kl").__module__)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fipo_cli.verl_adapter.plugin"  # the entry point fipo_cli.verl_plugin re-exports it


def test_ray_workers_resolve_future_kl(tmp_path):
    result = run_python(
        """
        import os, ray
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)

        @ray.remote
        def probe():
            from verl.trainer.ppo.core_algos import get_policy_loss_fn
            return os.getpid(), get_policy_loss_fn("future_kl").__module__

        worker_pid, module = ray.get(probe.remote())
        print(worker_pid != os.getpid(), module)
        ray.shutdown()
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "True fipo_cli.verl_adapter.plugin"


def test_official_overrides_compose_in_verl_unchanged(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "verl.trainer.main_ppo", "--cfg", "job", *OFFICIAL_LAUNCHER_OVERRIDES],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    composed = yaml.safe_load(result.stdout)
    policy_loss = composed["actor_rollout_ref"]["actor"]["policy_loss"]
    assert policy_loss["_target_"] == verl_plugin.CONFIG_TARGET
    assert policy_loss["loss_mode"] == "future_kl"
    assert policy_loss["future_kl_clip_ratio"] == 0.2 and policy_loss["future_kl_clip_high_only"] is True
    assert policy_loss["decay_rate"] == 32.0


def test_fipo_layer_changes_nothing_but_the_policy_loss_knobs(monkeypatch):
    with_fipo = OmegaConf.to_container(verl_compose.compose([]))
    monkeypatch.setenv("FIPO_VERL_KNOBS", "0")
    verl_only = OmegaConf.to_container(verl_compose.compose([]))
    fipo_loss = with_fipo["actor_rollout_ref"]["actor"].pop("policy_loss")
    verl_loss = verl_only["actor_rollout_ref"]["actor"].pop("policy_loss")
    assert with_fipo == verl_only
    assert verl_loss["_target_"] == "verl.workers.config.PolicyLossConfig"
    assert fipo_loss.pop("_target_") == verl_plugin.CONFIG_TARGET
    verl_loss.pop("_target_")
    added = {key: fipo_loss[key] for key in fipo_loss.keys() - verl_loss.keys()}
    assert {key: fipo_loss[key] for key in verl_loss} == verl_loss
    assert added == knobs.KNOB_DEFAULTS


def test_knob_defaults_agree_everywhere():
    fields = {f.name: f.default for f in dataclasses.fields(verl_plugin.FutureKLPolicyLossConfig)}
    assert {name: fields[name] for name in knobs.KNOB_DEFAULTS} == knobs.KNOB_DEFAULTS
    shipped = yaml.safe_load((REPO / "fipo_cli" / "verl_conf" / "actor" / "dp_actor.yaml").read_text())
    assert {k: v for k, v in shipped["policy_loss"].items() if k != "_target_"} == knobs.KNOB_DEFAULTS


def test_bad_knob_stops_verl_when_it_builds_the_actor_config():
    cfg = verl_compose.compose([f"{ACTOR}.policy_loss.gamma=1.5", f"{ACTOR}.policy_loss.future_kl_window=0",
                        f"{ACTOR}.ppo_micro_batch_size_per_gpu=2"])
    with pytest.raises(Exception) as caught:
        omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert "gamma=1.5: must lie in (0, 1]" in str(caught.value)
    assert "future_kl_window=0" in str(caught.value)


@pytest.mark.parametrize("with_is_weights", [False, True])
def test_weights_of_one_reproduce_verls_vanilla_loss(with_is_weights):
    old, new, adv, mask = batch(0)
    weights = torch.rand_like(old) + 0.5 if with_is_weights else None
    fipo_new = new.clone().requires_grad_(True)
    vanilla_new = new.clone().requires_grad_(True)
    # Influence bounds [1, 1] force f = 1; at most one dual-clip per row drops nothing.
    fipo_loss, fipo_metrics = get_policy_loss_fn("future_kl")(
        old, fipo_new, adv, mask, "token-mean", dict_config(future_kl_clip_low=0.0, future_kl_clip_high=0.0), weights
    )
    vanilla_loss, vanilla_metrics = compute_policy_loss_vanilla(
        old, vanilla_new, adv, mask, "token-mean", dict_config(), weights
    )
    torch.testing.assert_close(fipo_loss, vanilla_loss, rtol=1e-6, atol=1e-7)
    fipo_loss.backward()
    vanilla_loss.backward()
    torch.testing.assert_close(fipo_new.grad, vanilla_new.grad, rtol=1e-6, atol=1e-8)
    assert fipo_metrics["actor/fipo_dropped_seq_frac"] == 0.0
    assert vanilla_metrics["actor/pg_clipfrac_lower"] > 0
    for name, value in vanilla_metrics.items():
        assert fipo_metrics[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_dict_config_with_official_names_and_global_batch_info():
    old, new, adv, mask = batch(1)
    official = dict(future_kl_clip_ratio=0.2, future_kl_clip_high_only=False, decay_rate=16.0, safety_thresh=3.0)
    config = dict_config(**official)
    config.global_batch_info = {"dp_size": 1, "batch_num_tokens": int(mask.sum()), "global_batch_size": 6}
    loss, metrics = get_policy_loss_fn("future_kl")(old, new, adv, mask, "token-mean", config, None)
    expected, _ = fipo_policy_loss(old, new, adv, mask, knobs.resolve(official), PPOClip(0.2, 0.28, 10.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert 0.8 - 1e-6 <= metrics["actor/fipo_influence_weight_min"] <= metrics["actor/fipo_influence_weight_max"] <= 1.2 + 1e-6
    assert all(isinstance(value, float) for value in metrics.values())


def test_global_batch_info_of_a_mini_batch_with_dropped_responses_gives_their_kept_token_mean():
    # One micro-batch that is the whole mini-batch, as verl's engine describes it: its valid tokens, dropped
    # ones included.
    old, new, adv, mask = batch(3)
    adv[:3] = -adv[:3].abs() - 0.1
    new[:2, 4] = old[:2, 4] + 3.0  # with token 3: rows 0 and 1 have two dual-clip firings and are dropped
    config = dict_config()
    config.global_batch_info = {"dp_size": 1, "batch_num_tokens": int(mask.sum()), "global_batch_size": 6}
    loss, metrics = get_policy_loss_fn("future_kl")(old, new, adv, mask, "token-mean", config, None)

    per_token_kept_mean, _ = fipo_policy_loss(old, new, adv, mask, knobs.resolve({}), PPOClip(0.2, 0.28, 10.0))
    _, per_token, keep, _ = naive_fipo_loss(old, new, adv, mask, gamma=knobs.gamma_from_decay_rate(32.0), low=1.0,
                                            high=1.2, clipped=True, safety=10.0, eps_low=0.2, eps_high=0.28, c=10.0)
    assert metrics["actor/fipo_dropped_seq_frac"] == pytest.approx(2 / 6)
    assert metrics["actor/fipo_dropped_token_frac"] == pytest.approx(1 - keep.sum().item() / mask.sum().item())
    kept_mean = (per_token * keep).sum().item() / keep.sum().item()
    assert loss.item() == pytest.approx(kept_mean, rel=1e-6)
    assert loss.item() == pytest.approx(per_token_kept_mean.item(), rel=1e-6)
    assert metrics[verl_plugin.KEPT_MEAN_METRIC] == pytest.approx(kept_mean, rel=1e-6)
    # verl's own denominator, every valid token: the loss would shrink by the dropped tokens' share.
    assert abs(kept_mean * keep.sum().item() / mask.sum().item() - kept_mean) > 0.1 * abs(kept_mean)


def test_through_verls_ppo_loss_with_its_hydra_actor_config():
    cfg = verl_compose.compose(
        [f"{ACTOR}.policy_loss.loss_mode=future_kl", f"{ACTOR}.policy_loss.decay_rate=16",
         f"{ACTOR}.policy_loss.future_kl_clip_ratio=0.2", f"{ACTOR}.policy_loss.future_kl_clip_high_only=False",
         f"{ACTOR}.clip_ratio_c=10.0", f"{ACTOR}.ppo_micro_batch_size_per_gpu=2"]
    )
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    assert isinstance(actor.policy_loss, verl_plugin.FutureKLPolicyLossConfig)

    # Three sequences packed without padding (prompt + response), as verl's engine returns them.
    prompt_lens, response_lens, max_prompt, max_response = [2, 3, 1], [4, 2, 5], 3, 5
    attention = torch.zeros(3, max_prompt + max_response, dtype=torch.long)
    for row, (p, r) in enumerate(zip(prompt_lens, response_lens, strict=True)):
        attention[row, max_prompt - p : max_prompt] = 1
        attention[row, max_prompt : max_prompt + r] = 1
    generator = torch.Generator().manual_seed(4)
    packed_log_probs = (-torch.rand(sum(prompt_lens) + sum(response_lens), generator=generator)).requires_grad_(True)
    response_mask = (torch.arange(max_response)[None, :] < torch.tensor(response_lens)[:, None]).float()
    old = -torch.rand(3, max_response, generator=generator)
    adv = torch.tensor([[1.0], [-0.5], [0.7]]).expand(3, max_response).clone()
    data = TensorDict(
        {"prompts": torch.zeros(3, max_prompt, dtype=torch.long), "responses": torch.zeros(3, max_response, dtype=torch.long),
         "attention_mask": attention, "response_mask": response_mask, "old_log_probs": old, "advantages": adv},
        batch_size=[3],
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=int(response_mask.sum()), global_batch_size=3)

    loss, metrics = ppo_loss(actor, {"log_probs": packed_log_probs}, data)
    loss.backward()

    # Response log-probs sit one position left of each response token in the packed sequence.
    padded = torch.zeros(3, max_response)
    start = 0
    for row, (p, r) in enumerate(zip(prompt_lens, response_lens, strict=True)):
        padded[row, :r] = packed_log_probs.detach()[start + p - 1 : start + p - 1 + r]
        start += p + r
    expected, _ = fipo_policy_loss(old, padded, adv, response_mask, knobs.resolve(actor.policy_loss), PPOClip(0.2, 0.2, 10.0))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert packed_log_probs.grad.abs().sum() > 0
    assert {"actor/pg_loss", "actor/ppo_kl", "actor/pg_clipfrac_lower", "actor/fipo_influence_weight_mean",
            "actor/fipo_clipfrac_upper", "actor/fipo_dropped_seq_frac"} <= set(metrics)


def test_bf16_autocast_changes_neither_the_loss_nor_its_gradient():
    # verl runs the actor's forward, the policy loss included, inside torch.autocast(bf16).
    old, new, adv, mask = batch(2, length=300)
    # No influence clipping: every weight is exp(FutureKL) itself, so a bf16 Future-KL would show.
    config = dict_config(future_kl_clip_ratio=0.0, decay_rate=64.0)
    loss_fn = get_policy_loss_fn("future_kl")

    plain_new = new.clone().requires_grad_(True)
    plain_loss, plain_metrics = loss_fn(old, plain_new, adv, mask, "token-mean", config, None)
    plain_loss.backward()
    cast_new = new.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast_loss, cast_metrics = loss_fn(old, cast_new, adv, mask, "token-mean", config, None)
    cast_loss.backward()

    assert cast_loss.dtype == torch.float32
    assert cast_loss.item() == plain_loss.item()
    assert torch.equal(cast_new.grad, plain_new.grad)
    assert cast_metrics == plain_metrics


@pytest.mark.parametrize("loss_agg_mode", ["token-mean", "seq-mean-token-sum"])
def test_every_response_dropped_gives_zero_loss_and_zero_gradient_through_verl(loss_agg_mode):
    old, new, adv, mask = batch(3)
    new[:, 4] = old[:, 4] + 3.0  # with token 3: two dual-clip firings (Â < 0, r ≈ 20 > c) in every response
    adv = -adv.abs() - 0.1
    config = dict_config()  # global_batch_info {}: verl counts the tokens (or sequences) of this call
    learner = new.clone().requires_grad_(True)
    loss, metrics = get_policy_loss_fn("future_kl")(old, learner, adv, mask, loss_agg_mode, config, None)
    assert metrics["actor/fipo_dropped_seq_frac"] == 1.0
    assert loss.item() == 0.0  # verl's agg_loss alone gives 0/0 = NaN here
    loss.backward()
    assert torch.equal(learner.grad, torch.zeros_like(learner))


#: Aborted (0) and cut (16 = RESPONSE) responses included.
LENGTHS = [0, 16, 3, 7, 16, 1, 9, 12, 5, 16, 2, 8]


VERL_KEYS = ("response_length/mean", "response_length/min", "response_length/max")


def verl_batch(lengths: list[int], *, v1: bool = False, seed: int = 0) -> DataProto:
    """A training batch as verl's trainers hand it to ``compute_data_metrics``.

    Legacy layout (``v1=False``, as ``RayPPOTrainer.fit`` has it): left-padded prompts and
    right-padded responses with one ``attention_mask`` over both. v1 layout (main_ppo's
    default trainer): no attention mask; ``prompt_length``/``response_length`` as float
    tensors. GRPO advantages: one value per response on its tokens, the reward on its last token.
    """
    generator = torch.Generator().manual_seed(seed)
    batch_size = len(lengths)
    positions = torch.arange(RESPONSE)
    response_mask = (positions[None, :] < torch.tensor(lengths)[:, None]).long()
    prompt_lengths = torch.randint(1, PROMPT + 1, (batch_size,), generator=generator)
    prompt_mask = (torch.arange(PROMPT)[None, :] >= (PROMPT - prompt_lengths)[:, None]).long()
    scores = torch.randint(0, 2, (batch_size,), generator=generator).float() * 2 - 1
    advantages = (scores - scores.mean())[:, None] * response_mask
    last = (torch.tensor(lengths) - 1).clamp(min=0)
    token_level = torch.zeros(batch_size, RESPONSE).scatter(1, last[:, None], scores[:, None]) * response_mask
    tensors = {
        "prompts": torch.randint(3, 100, (batch_size, PROMPT), generator=generator) * prompt_mask,
        "responses": torch.randint(3, 100, (batch_size, RESPONSE), generator=generator) * response_mask,
        "response_mask": response_mask,
        "advantages": advantages,
        "returns": advantages,
        "token_level_scores": token_level,
        "token_level_rewards": token_level,
    }
    if v1:
        tensors |= {"prompt_length": prompt_lengths.float(), "response_length": torch.tensor(lengths).float()}
    else:
        tensors["attention_mask"] = torch.cat([prompt_mask, response_mask], dim=1)
    return DataProto.from_dict(tensors=tensors)


def naive(lengths: list[int], batch: DataProto) -> dict[str, float]:
    """The expected values, from numpy on the true lengths and the batch's tensors."""
    true = np.asarray(lengths, dtype=np.float64)
    advantages = batch.batch["advantages"].numpy().astype(np.float64)
    mask = batch.batch["response_mask"].numpy()
    expected = {name: float(np.percentile(true, q)) for name, q in PERCENTILES.items()}
    expected[LENGTH_WEIGHTED_ADVANTAGE] = float((advantages * mask).sum() / true.sum())
    return expected


@pytest.mark.parametrize("v1", [False, True], ids=["legacy-attention-mask", "v1-lengths-in-batch"])
def test_verls_data_metrics_gain_the_whole_batch_percentiles(v1):
    batch = verl_batch(LENGTHS, v1=v1)

    metrics = metric_utils.compute_data_metrics(batch=batch, use_critic=False)

    # verl's own keys are still there, computed from the same lengths.
    assert metrics["response_length/mean"] == pytest.approx(np.mean(LENGTHS))
    assert (metrics["response_length/min"], metrics["response_length/max"]) == (0, 16)
    expected = naive(LENGTHS, batch)
    assert {name: metrics[name] for name in expected} == pytest.approx(expected, abs=1e-9)
    assert metrics["response_length/p25"] == 2.75 and metrics["response_length/median"] == 7.5
    # Single-turn: every response token is in the mask, so Ā is verl's token mean of the advantages.
    assert metrics[LENGTH_WEIGHTED_ADVANTAGE] == pytest.approx(metrics["critic/advantages/mean"], rel=1e-6)


def test_the_hook_is_installed_once_at_import_verl(tmp_path):
    assert metric_utils.compute_data_metrics.fipo_length_metrics
    before = metric_utils.compute_data_metrics
    verl_plugin.install_length_metrics()
    assert metric_utils.compute_data_metrics is before
    assert before.__wrapped__.__module__ == "verl.trainer.ppo.metric_utils"
    # A fresh process outside the repository: only the installed entry point can have wrapped it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import verl
            from verl.trainer.ppo.metric_utils import compute_data_metrics
            print(compute_data_metrics.fipo_length_metrics)
            """
        )],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr


def test_every_verl_trainer_binds_compute_data_metrics_from_metric_utils():
    """The hook works because each caller imports the name from metric_utils after `import verl`.

    A verl that called a copy, or imported it another way, would log no percentiles: this
    fails first.
    """
    callers = []
    for path in Path(verl.__file__).parent.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if "compute_data_metrics(" not in source or path.name == "metric_utils.py":
            continue
        tree = ast.parse(source)
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and getattr(node.func, "id", getattr(node.func, "attr", None)) == "compute_data_metrics"]
        if not calls:
            continue
        callers.append(path.relative_to(Path(verl.__file__).parent).as_posix())
        imported = [node for node in tree.body if isinstance(node, ast.ImportFrom)
                    and node.module == "verl.trainer.ppo.metric_utils"
                    and "compute_data_metrics" in {alias.name for alias in node.names}]
        assert imported, f"{path} calls compute_data_metrics without importing it from metric_utils"
    assert {"trainer/ppo/ray_trainer.py", "trainer/ppo/v1/trainer_base.py"} <= set(callers)


def test_every_logger_gets_the_metrics(tmp_path, offline_wandb, monkeypatch):
    """verl's Tracking with the file logger and W&B (offline), as the trainer logs a step."""
    import wandb
    from verl.utils.tracking import Tracking

    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "metrics.jsonl"))
    batch = verl_batch(LENGTHS)
    metrics = metric_utils.compute_data_metrics(batch=batch, use_critic=False)
    tracking = Tracking("fipo-test", "exp-run", default_backend=["file", "wandb"], config={"trainer": {}})
    tracking.log(data=metrics, step=3)
    tracking.finish()
    wandb.teardown()

    expected = naive(LENGTHS, batch)
    (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["step"] == 3
    assert {name: record["data"][name] for name in expected} == pytest.approx(expected)
    (path,) = wandb_records.run_files(offline_wandb)
    (row,) = wandb_records.history(path)
    assert row["_step"] == 3
    assert {name: row[name] for name in [*expected, *VERL_KEYS]} == pytest.approx({**expected, **{
        name: metrics[name] for name in VERL_KEYS}})


@pytest.mark.ray
def test_a_ray_actor_tracking_with_wandb_exits_without_a_traceback(tmp_path):
    """verl's trainer tracks from a Ray actor; Ray kills the actor's children (W&B's service) as the actor
    exits, before W&B's atexit hook runs. Without the plugin's teardown the hook prints a ConnectionResetError
    traceback into the actor's log after a run that succeeded (verl_plugin.with_wandb_teardown)."""
    import tempfile

    temp = tempfile.mkdtemp(prefix="/tmp/fipo-wb-")  # Ray's socket paths must stay under 108 bytes
    try:
        result = run_python(
            f"""
            import glob, os, time
            import ray
            ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir={temp!r},
                     runtime_env={{"env_vars": {{"WANDB_MODE": "offline", "WANDB_DIR": {str(tmp_path)!r}}}}})

            @ray.remote
            class Trainer:
                def run(self):
                    from verl.utils.tracking import Tracking
                    tracking = Tracking("fipo-test", "exp-run", default_backend=["wandb"], config={{"trainer": {{}}}})
                    tracking.log(data={{"actor/pg_loss": 0.5}}, step=1)
                    tracking.finish(exit_code=0)
                    return os.getpid()

            trainer = Trainer.remote()
            pid = ray.get(trainer.run.remote())
            del trainer  # the actor exits as it does when verl's driver is done
            deadline = time.monotonic() + 60
            while os.path.exists(f"/proc/{{pid}}") and time.monotonic() < deadline:
                time.sleep(0.2)
            logs = glob.glob(f"{temp}/session_latest/logs/worker-*-{{pid}}.*")
            print(len(logs), "LOG>" + "".join(open(path).read() for path in logs))
            ray.shutdown()
            """,
            tmp_path,
        )
    finally:
        subprocess.run(["rm", "-rf", temp], check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    count, _, logged = result.stdout.partition("LOG>")
    assert int(count.split()[-1]) == 2  # the actor's .out and .err
    assert "wandb sync" in logged  # W&B finished the run in the actor
    assert "Traceback" not in logged and "Exception ignored" not in logged, logged[-3000:]
    (path,) = wandb_records.run_files(tmp_path / "wandb")
    assert [row["_step"] for row in wandb_records.history(path)] == [1]


# --------------------------------------------------------------------------- inside verl's engine loop

ENGINE_RANKS = 2
ENGINE_KNOBS = dict(decay_rate=16.0, future_kl_clip_ratio=0.2, future_kl_clip_high_only=False, safety_thresh=3.0)
DROPPED_ROWS = (1, 4, 10, 15)  # Â < 0 and two tokens with r = e^3 ≈ 20 > c: the sequence filter drops them


def engine_inputs(rows=18, length=12, features=3):
    generator = torch.Generator().manual_seed(19)
    adv = torch.randn(rows, 1, generator=generator).expand(rows, length).clone()
    shift = 0.5 * torch.randn(rows, length, generator=generator)
    for row in DROPPED_ROWS:
        adv[row] = -adv[row].abs() - 0.1
        shift[row, :2] = 3.0
    shift[2, 0] = 3.0  # one dual-clip firing: kept
    adv[2] = -adv[2].abs() - 0.1
    return {
        "prompt_lens": torch.randint(2, 6, (rows,), generator=generator),
        "response_lens": torch.randint(3, length + 1, (rows,), generator=generator),
        "old_log_probs": -2 * torch.rand(rows, length, generator=generator),
        "shift": shift,
        "features": torch.randn(rows, length, features, generator=generator),
        "advantages": adv,
        "ranks": ENGINE_RANKS,
        "max_token_len": 36,  # 2-3 sequences of 5-17 tokens per micro-batch
        "overrides": [f"{ACTOR}.policy_loss.loss_mode=future_kl", f"{ACTOR}.clip_ratio_c=10.0",
                      f"{ACTOR}.clip_ratio_low=0.2", f"{ACTOR}.clip_ratio_high=0.28",
                      f"{ACTOR}.ppo_micro_batch_size_per_gpu=2", f"{ACTOR}.loss_agg_mode=token-mean",
                      *(f"{ACTOR}.policy_loss.{key}={value}" for key, value in ENGINE_KNOBS.items())],
    }


def test_loss_of_a_mini_batch_in_verls_engine_loop_is_the_documented_kept_token_mean(tmp_path):
    inputs = engine_inputs()
    torch.save(inputs, tmp_path / "inputs.pt")
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "verl_engine_run.py"), str(tmp_path / "inputs.pt"),
         str(tmp_path / "out.pt")],
        cwd=tmp_path, env=clean_env(VERL_PLATFORM="cpu"), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = torch.load(tmp_path / "out.pt")

    length = inputs["old_log_probs"].shape[1]
    valid = torch.arange(length)[None, :] < inputs["response_lens"][:, None]
    total_valid = int(valid.sum())
    theta = torch.zeros(inputs["features"].shape[-1], dtype=torch.float64, requires_grad=True)
    settings = knobs.resolve(ENGINE_KNOBS)
    micro_batches, kept_and_dropped = [], 0
    for rank in ranks:
        assert len(rank["micro_batches"]) >= 2  # verl split the rank's rows into several micro-batches
        for micro in rank["micro_batches"]:
            # What verl's engine put in global_batch_info before the loss ran: the whole mini-batch, both ranks.
            info = micro["global_batch_info"]
            assert (info["batch_num_tokens"], info["dp_size"], info["global_batch_size"]) == (total_valid, 2, 18)
            rows = torch.tensor(micro["rows"])
            old = inputs["old_log_probs"][rows].double()
            new = old + inputs["shift"][rows].double() + inputs["features"][rows].double() @ theta
            _, per_token, keep, _ = naive_fipo_loss(
                old, new, inputs["advantages"][rows], valid[rows], gamma=settings.gamma, low=settings.clip_low,
                high=settings.clip_high, clipped=settings.clipped, safety=settings.safety_thresh,
                eps_low=0.2, eps_high=0.28, c=10.0,
            )
            micro_batches.append((per_token, valid[rows], keep))
            dropped = {int(row) for row in rows} & set(DROPPED_ROWS)
            kept_and_dropped += bool(dropped) and len(dropped) < len(rows)
    assert sorted(row for rank in ranks for micro in rank["micro_batches"] for row in micro["rows"]) == list(range(18))
    assert kept_and_dropped >= 1  # a micro-batch whose kept tokens stand in for a dropped response's

    expected = naive_mini_batch_token_mean(micro_batches, total_valid)
    (expected_gradient,) = torch.autograd.grad(expected, theta)
    # verl logs a mini-batch's actor/pg_loss as the sum over its micro-batches, averaged over the ranks;
    # FSDP averages the ranks' gradients.
    logged = sum(sum(rank["losses"]) for rank in ranks) / ENGINE_RANKS
    assert logged == pytest.approx(expected.item(), rel=1e-6)
    for rank in ranks:
        assert [micro["metrics"]["actor/pg_loss"] for micro in rank["micro_batches"]] == [[x] for x in rank["losses"]]
    gradient = sum(rank["gradient"] for rank in ranks) / ENGINE_RANKS
    torch.testing.assert_close(gradient.double(), expected_gradient, rtol=1e-5, atol=1e-8)
    # verl's own denominator (every valid token, dropped ones included) would be off by more than 1 %.
    verls_denominator = sum((per_token * keep).sum() for per_token, _, keep in micro_batches) / total_valid
    assert abs(verls_denominator.item() - expected.item()) > 0.01 * abs(expected.item())
