"""`fipo init NAME --from-launcher SCRIPT`: an official-style launcher read (never run) and composed back.

The launchers here are written for these tests in the style of the official FIPO and DAPO ones (bash
variables with environment defaults, $((...)), quoting, continuations, `ray job submit ... --`); the
official files are not in the project. The central test composes the imported experiment with the
installed verl and compares every training value the launcher sets with what verl 0.9.1 gets.
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from fipo_cli.core.errors import UsageError
from fipo_cli.experiment import launcher_script
from fipo_cli.experiment.overrides import parse_value
from fipo_cli.loss import knobs

from fipo_run import run_fipo

FIPO_32B_STYLE = textwrap.dedent(
    r"""
    #!/usr/bin/env bash
    set -xeuo pipefail

    project_name='FIPO-test'
    exp_name='FIPO-Qwen2.5-32B-test'
    adv_estimator=grpo
    use_kl_in_reward=False
    kl_coef=0.0
    use_kl_loss=False
    kl_loss_coef=0.0
    clip_ratio_low=0.2
    clip_ratio_high=0.28
    max_prompt_length=$((1024 * 2))
    max_response_length=$((1024 * 20))
    enable_overlong_buffer=True
    overlong_buffer_len=$((1024 * 4))
    overlong_penalty_factor=1.0
    loss_agg_mode="token-mean"
    enable_filter_groups=True
    filter_groups_metric=acc
    max_num_gen_batches=10
    train_prompt_bsz=512
    gen_prompt_bsz=$((train_prompt_bsz * 4))
    n_resp_per_prompt=16
    train_prompt_mini_bsz=64
    # the loss
    loss_mode=future_kl
    decay_rate=32.0
    chunk_size=128
    future_kl_start=include_current
    future_kl_window=-1
    future_kl_average=False
    future_kl_clip_ratio=0.2
    future_kl_clip_high_only=True
    safety_thresh=10.0

    RAY_ADDRESS=${RAY_ADDRESS:-"http://localhost:8265"}
    WORKING_DIR=${WORKING_DIR:-"${PWD}"}
    NNODES=${NNODES:-16}
    RAY_DATA_HOME=${RAY_DATA_HOME:-"${HOME}/verl"}
    MODEL_PATH=${MODEL_PATH:-"${RAY_DATA_HOME}/models/Qwen2.5-32B"}
    CKPTS_DIR=${CKPTS_DIR:-"${RAY_DATA_HOME}/ckpts/${project_name}/${exp_name}"}
    TRAIN_FILE=${TRAIN_FILE:-"${RAY_DATA_HOME}/data/dapo-math-17k.parquet"}
    TEST_FILE=${TEST_FILE:-"${RAY_DATA_HOME}/data/aime-2024.parquet"}
    temperature=1.0
    top_p=1.0
    top_k=-1 # -1 for vLLM
    val_top_p=0.7
    sp_size=8
    use_dynamic_bsz=True
    actor_ppo_max_token_len=$((max_prompt_length + max_response_length))
    infer_ppo_max_token_len=$((max_prompt_length + max_response_length))
    offload=True
    gen_tp=4

    ray job submit --no-wait --runtime-env="${WORKING_DIR}/runtime_env.yaml" \
        --working-dir "${WORKING_DIR}" \
        -- python3 -m recipe.dapo.main_dapo \
        data.train_files="${TRAIN_FILE}" \
        data.val_files="${TEST_FILE}" \
        data.prompt_key=prompt \
        data.truncation='left' \
        data.max_prompt_length=${max_prompt_length} \
        data.max_response_length=${max_response_length} \
        data.gen_batch_size=${gen_prompt_bsz} \
        data.train_batch_size=${train_prompt_bsz} \
        actor_rollout_ref.rollout.n=${n_resp_per_prompt} \
        algorithm.adv_estimator=${adv_estimator} \
        algorithm.use_kl_in_reward=${use_kl_in_reward} \
        algorithm.kl_ctrl.kl_coef=${kl_coef} \
        actor_rollout_ref.actor.use_kl_loss=${use_kl_loss} \
        actor_rollout_ref.actor.kl_loss_coef=${kl_loss_coef} \
        actor_rollout_ref.actor.clip_ratio_low=${clip_ratio_low} \
        actor_rollout_ref.actor.clip_ratio_high=${clip_ratio_high} \
        actor_rollout_ref.actor.clip_ratio_c=10.0 \
        algorithm.filter_groups.enable=${enable_filter_groups} \
        algorithm.filter_groups.max_num_gen_batches=${max_num_gen_batches} \
        algorithm.filter_groups.metric=${filter_groups_metric} \
        actor_rollout_ref.model.use_remove_padding=True \
        actor_rollout_ref.actor.use_dynamic_bsz=${use_dynamic_bsz} \
        actor_rollout_ref.ref.log_prob_use_dynamic_bsz=${use_dynamic_bsz} \
        actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=${use_dynamic_bsz} \
        actor_rollout_ref.actor.ppo_max_token_len_per_gpu=${actor_ppo_max_token_len} \
        actor_rollout_ref.ref.log_prob_max_token_len_per_gpu=${infer_ppo_max_token_len} \
        actor_rollout_ref.rollout.log_prob_max_token_len_per_gpu=${infer_ppo_max_token_len} \
        actor_rollout_ref.model.path="${MODEL_PATH}" \
        actor_rollout_ref.model.enable_gradient_checkpointing=True \
        actor_rollout_ref.actor.optim.lr=1e-6 \
        actor_rollout_ref.actor.optim.lr_warmup_steps=10 \
        actor_rollout_ref.actor.optim.warmup_style=constant \
        actor_rollout_ref.actor.optim.weight_decay=0.1 \
        actor_rollout_ref.actor.ppo_mini_batch_size=${train_prompt_mini_bsz} \
        actor_rollout_ref.actor.fsdp_config.param_offload=${offload} \
        actor_rollout_ref.actor.fsdp_config.optimizer_offload=${offload} \
        actor_rollout_ref.actor.entropy_coeff=0 \
        actor_rollout_ref.actor.grad_clip=1.0 \
        actor_rollout_ref.actor.loss_agg_mode=${loss_agg_mode} \
        actor_rollout_ref.actor.policy_loss.loss_mode=${loss_mode} \
        +actor_rollout_ref.actor.policy_loss.decay_rate=${decay_rate} \
        +actor_rollout_ref.actor.policy_loss.chunk_size=${chunk_size} \
        +actor_rollout_ref.actor.policy_loss.future_kl_start=${future_kl_start} \
        +actor_rollout_ref.actor.policy_loss.future_kl_window=${future_kl_window} \
        +actor_rollout_ref.actor.policy_loss.future_kl_average=${future_kl_average} \
        +actor_rollout_ref.actor.policy_loss.future_kl_clip_ratio=${future_kl_clip_ratio} \
        +actor_rollout_ref.actor.policy_loss.future_kl_clip_high_only=${future_kl_clip_high_only} \
        +actor_rollout_ref.actor.policy_loss.safety_thresh=${safety_thresh} \
        actor_rollout_ref.actor.ulysses_sequence_parallel_size=${sp_size} \
        actor_rollout_ref.rollout.gpu_memory_utilization=0.80 \
        actor_rollout_ref.rollout.tensor_model_parallel_size=${gen_tp} \
        actor_rollout_ref.rollout.enable_chunked_prefill=True \
        actor_rollout_ref.rollout.max_num_batched_tokens=$((max_prompt_length + max_response_length)) \
        actor_rollout_ref.rollout.temperature=${temperature} \
        actor_rollout_ref.rollout.top_p=${top_p} \
        actor_rollout_ref.rollout.top_k="${top_k}" \
        actor_rollout_ref.rollout.val_kwargs.temperature=${temperature} \
        actor_rollout_ref.rollout.val_kwargs.top_p=${val_top_p} \
        actor_rollout_ref.rollout.val_kwargs.do_sample=True \
        actor_rollout_ref.rollout.val_kwargs.n=1 \
        actor_rollout_ref.rollout.name=vllm \
        actor_rollout_ref.ref.fsdp_config.param_offload=${offload} \
        actor_rollout_ref.ref.ulysses_sequence_parallel_size=${sp_size} \
        actor_rollout_ref.actor.fsdp_config.fsdp_size=-1 \
        reward_model.reward_manager=dapo \
        reward_model.overlong_buffer.enable=${enable_overlong_buffer} \
        reward_model.overlong_buffer.len=${overlong_buffer_len} \
        reward_model.overlong_buffer.penalty_factor=${overlong_penalty_factor} \
        trainer.logger='["console","wandb"]' \
        trainer.project_name="${project_name}" \
        trainer.experiment_name="${exp_name}" \
        trainer.n_gpus_per_node=8 \
        trainer.nnodes="${NNODES}" \
        trainer.val_before_train=True \
        trainer.test_freq=5 \
        trainer.save_freq=5 \
        trainer.total_epochs=1 \
        trainer.default_local_dir="${CKPTS_DIR}" \
        trainer.resume_mode=auto
    """
).lstrip()

#: The overrides whose verl 0.9.1 key has another name, or whose value the official run read otherwise.
RENAMED = {
    "reward_model.overlong_buffer.enable": "reward.reward_kwargs.overlong_buffer_cfg.enable",
    "reward_model.overlong_buffer.len": "reward.reward_kwargs.overlong_buffer_cfg.len",
    "reward_model.overlong_buffer.penalty_factor": "reward.reward_kwargs.overlong_buffer_cfg.penalty_factor",
    "reward_model.reward_manager": "reward.reward_manager.name",
    "actor_rollout_ref.actor.optim.warmup_style": "actor_rollout_ref.actor.optim.lr_scheduler_type",
}
#: Not training values, or what fipo owns, or keys verl 0.9.1 ignores (checked by the report instead).
NOT_COMPARED = {
    "data.train_files", "data.val_files", "actor_rollout_ref.model.path", "trainer.nnodes", "trainer.experiment_name",
    "trainer.default_local_dir", "trainer.logger", "trainer.project_name", "data.gen_batch_size",
    "algorithm.filter_groups.max_num_gen_batches", "trainer.total_epochs", "actor_rollout_ref.rollout.val_kwargs.n",
    # the FIPO knobs: compared resolved, below
    *(f"actor_rollout_ref.actor.policy_loss.{knob}" for knob in
      ("decay_rate", "chunk_size", "future_kl_clip_ratio", "future_kl_clip_high_only", "safety_thresh",
       "future_kl_start", "future_kl_window", "future_kl_average")),
}

needs_verl = pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")


@pytest.fixture
def launcher(tmp_path: Path) -> Path:
    path = tmp_path / "run_fipo_test_32b.sh"
    path.write_text(FIPO_32B_STYLE)
    path.chmod(0o644)  # not executable: fipo reads it and never runs it
    return path


def test_the_parser_expands_variables_arithmetic_quotes_and_continuations(launcher):
    script = launcher_script.read(launcher)
    assert script.module == "recipe.dapo.main_dapo" and script.submitted_to_ray
    assert len(script.overrides) == 79
    by_key = {override.key: override.value for override in script.overrides}
    assert by_key["data.gen_batch_size"].text == "2048" and not by_key["data.gen_batch_size"].env
    assert by_key["actor_rollout_ref.rollout.max_num_batched_tokens"].text == "22528"
    assert by_key["data.truncation"].text == "left" and by_key["trainer.logger"].text == '["console","wandb"]'
    assert by_key["+actor_rollout_ref.actor.policy_loss.future_kl_clip_high_only"].text == "True"
    # Environment defaults stay symbolic and name their variables, transitively.
    assert by_key["trainer.nnodes"].text == "16" and by_key["trainer.nnodes"].env == ("NNODES",)
    assert by_key["actor_rollout_ref.model.path"].text == "${HOME}/verl/models/Qwen2.5-32B"
    assert by_key["actor_rollout_ref.model.path"].env == ("MODEL_PATH", "RAY_DATA_HOME", "HOME")
    assert (2, "set -xeuo pipefail") in script.ignored


@pytest.mark.parametrize("body, message", [
    ("x='open\npython3 -m verl.trainer.main_ppo a=1\n", "unclosed ' quote"),
    ("echo hello\n", "no trainer command"),
    ("n=$((2 *))\npython3 -m verl.trainer.main_ppo a=$n\n", "is not integer arithmetic"),
    ("n=abc\npython3 -m verl.trainer.main_ppo a=$((n * 2))\n", "n is 'abc', not an integer"),
])
def test_what_the_parser_cannot_read_is_named_with_its_line(tmp_path, body, message):
    path = tmp_path / "bad.sh"
    path.write_text(body)
    with pytest.raises(UsageError) as caught:
        launcher_script.read(path)
    assert message in caught.value.message and caught.value.message.startswith(f"{path}:")


def test_command_substitution_is_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "launch.sh"
    path.write_text(f"STAMP=$(touch {marker})\npython3 -m verl.trainer.main_ppo trainer.experiment_name=$STAMP\n")
    (override,) = launcher_script.read(path).overrides
    assert override.value.environment_dependent and not marker.exists()


@needs_verl
def test_an_imported_official_launcher_composes_to_the_official_training_values(tmp_path, launcher):
    from fipo_cli.verl_adapter import compose as verl_compose

    result = run_fipo(tmp_path, "init", "official", "--from-launcher", str(launcher))
    assert result.returncode == 0, result.stderr
    report = result.stdout
    assert "79 overrides" in report
    for dropped in ("data.gen_batch_size=${gen_prompt_bsz}", "algorithm.filter_groups.max_num_gen_batches=",
                    "+actor_rollout_ref.actor.policy_loss.chunk_size=", "trainer.default_local_dir="):
        assert any(line.split()[0] == "dropped" and dropped in line for line in report.splitlines()), dropped
    written = yaml.safe_load((tmp_path / "experiments" / "official" / "fipo.yaml").read_text())
    assert written["verl"] == {"algorithm.kl_ctrl.kl_coef": 0.0, "actor_rollout_ref.rollout.top_k": -1,
                               "actor_rollout_ref.ref.fsdp_config.param_offload": True,
                               "actor_rollout_ref.actor.fsdp_config.fsdp_size": -1}
    assert written["trainer"]["total_training_steps"] == 874 and written["trainer"]["total_epochs"] is None
    assert written["cluster"]["launcher"] == "slurm" and written["algorithm"]["name"] == "fipo"

    plan = run_fipo(tmp_path, "train", "official", "--dry-run", "--json")
    assert plan.returncode == 0, plan.stderr
    composed = verl_compose.compose(json.loads(plan.stdout)["overrides"])
    script = launcher_script.read(launcher)
    compared = 0
    for override in script.overrides:
        path = override.key.lstrip("+")
        if path in NOT_COMPARED:
            continue
        expected = parse_value(override.value.text)
        actual = composed
        for part in RENAMED.get(path, path).split("."):
            actual = actual[part]
        assert actual == expected, (override.written, actual, expected)
        compared += 1
    assert compared == 59  # the other 20: the knobs (resolved above), paths, names, what verl ignores
    loss = composed.actor_rollout_ref.actor.policy_loss
    assert knobs.resolve(loss) == knobs.resolve({"decay_rate": 32.0, "future_kl_clip_ratio": 0.2,
                                                "future_kl_clip_high_only": True, "safety_thresh": 10.0,
                                                "future_kl_start": "include_current", "future_kl_window": -1,
                                                "future_kl_average": False})
    assert composed.trainer.total_training_steps == 874
    # The official file repeats each AIME problem 32 times with n=1; fipo's holds each once: 32 samples each.
    assert composed.actor_rollout_ref.rollout.val_kwargs.n == 32


def test_import_refuses_bad_input_and_writes_nothing(tmp_path, launcher):
    cases = [
        (["init", "x", "--from-launcher", str(tmp_path / "missing.sh")], "no such file"),
        (["init", "x", "--from-launcher", str(launcher), "--model", "llama"], "--model 'llama' has no recipe"),
        (["init", "../x", "--from-launcher", str(launcher)], "not safe as a directory"),
        (["init", "x"], "needs --model (a recipe) or --from-launcher SCRIPT"),
    ]
    other = tmp_path / "other.sh"
    other.write_text(FIPO_32B_STYLE.replace("Qwen2.5-32B\"}", "Llama-3-70B\"}"))
    cases.append((["init", "x", "--from-launcher", str(other)], "names no recipe's model"))
    for args, message in cases:
        result = run_fipo(tmp_path, *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    assert not (tmp_path / "experiments").exists()
