"""The shipped recipes: they load and carry the paper's values (tests/verl_adapter/test_compose.py: verl accepts them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fipo_cli.experiment import config, recipes
from fipo_cli.verl_adapter import overrides as verl_overrides

ACTOR = "actor_rollout_ref.actor"


ROLLOUT = "actor_rollout_ref.rollout"


LOSS = f"{ACTOR}.policy_loss"


OVERLONG = "+reward.reward_kwargs.overlong_buffer_cfg"


ALL_RECIPES = [(model, algo) for model in recipes.MODELS for algo in recipes.ALGORITHMS]


# FIPO.md §2, Table 2 and the 32B launcher, written out independently of the recipe files.
TABLE_2_FIPO_32B = {
    "actor_rollout_ref.model.path": "Qwen/Qwen2.5-32B",
    "data.train_batch_size": "512",
    f"{ROLLOUT}.n": "16",
    f"{ACTOR}.ppo_mini_batch_size": "64",
    f"{ACTOR}.optim.lr": "1e-06",
    f"{ACTOR}.optim.lr_scheduler_type": "constant",
    f"{ACTOR}.optim.lr_warmup_steps": "10",
    f"{ACTOR}.optim.weight_decay": "0.1",
    f"{ACTOR}.optim.clip_grad": "1.0",  # what verl 0.9.1's FSDP engine clips with (not actor.grad_clip)
    "data.max_prompt_length": "2048",
    "data.max_response_length": "20480",
    f"{OVERLONG}.enable": "true",
    f"{OVERLONG}.len": "4096",
    f"{OVERLONG}.penalty_factor": "1.0",
    f"{ROLLOUT}.temperature": "1.0",
    f"{ROLLOUT}.top_p": "1.0",
    f"{ACTOR}.clip_ratio_low": "0.2",
    f"{ACTOR}.clip_ratio_high": "0.28",
    f"{ACTOR}.clip_ratio_c": "10.0",
    "algorithm.use_kl_in_reward": "false",
    f"{ACTOR}.use_kl_loss": "false",
    f"{ACTOR}.loss_agg_mode": "token-mean",
    f"{ACTOR}.entropy_coeff": "0.0",
    f"{LOSS}.loss_mode": "future_kl",
    f"{LOSS}.decay_rate": "32.0",
    f"{LOSS}.future_kl_clip_low": "0.0",
    f"{LOSS}.future_kl_clip_high": "0.2",
    f"{LOSS}.safety_thresh": "10.0",
    "algorithm.filter_groups.enable": "true",
    "algorithm.filter_groups.metric": "acc",
    "algorithm.adv_estimator": "grpo",
    "reward.reward_manager.name": "dapo",
    # the launcher's infrastructure
    "trainer.nnodes": "16",
    "trainer.n_gpus_per_node": "8",
    f"{ROLLOUT}.name": "vllm",
    f"{ROLLOUT}.tensor_model_parallel_size": "4",
    f"{ROLLOUT}.gpu_memory_utilization": "0.8",
    f"{ROLLOUT}.enable_chunked_prefill": "true",
    f"{ROLLOUT}.max_num_batched_tokens": "22528",
    f"{ACTOR}.ulysses_sequence_parallel_size": "8",
    f"{ACTOR}.use_dynamic_bsz": "true",
    f"{ACTOR}.ppo_max_token_len_per_gpu": "22528",
    f"{ACTOR}.fsdp_config.param_offload": "true",
    f"{ACTOR}.fsdp_config.optimizer_offload": "true",
    "actor_rollout_ref.model.enable_gradient_checkpointing": "true",
    "actor_rollout_ref.model.use_remove_padding": "true",
    "data.truncation": "left",
    "trainer.val_before_train": "true",
    "trainer.test_freq": "5",
    "trainer.save_freq": "5",
    # The horizon: the official epoch's ⌊1,791,700 / 2,048⌋ generation rounds, as steps, with no epoch limit.
    "trainer.total_training_steps": "874",
    "trainer.total_epochs": "874",
    # verl's default attention crashes without flash_attn; auto is decided on the trainer's node.
    "+actor_rollout_ref.model.override_config.attn_implementation": "${fipo_auto_attention:8}",
    "trainer.resume_mode": "auto",
    "trainer.logger": "[console,file,wandb]",
}


def overrides_of(model: str, algo: str) -> dict[str, str]:
    experiment = config.load(recipes.recipe_path(model, algo))
    lines = verl_overrides.experiment_overrides(
        experiment, experiment_name="run", checkpoint_dir=Path("/ckpt"), hydra_dir=Path("/hydra"), wandb=True,
        worker_env={},
    )
    return dict(line.split("=", 1) for line in lines)


@pytest.mark.parametrize("model, algo", ALL_RECIPES)
def test_every_recipe_loads_and_every_value_names_its_source(model, algo):
    path = recipes.recipe_path(model, algo)
    experiment = config.load(path)
    assert experiment.algorithm.name == algo
    assert experiment.name == f"{model}-{algo}"
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and not line.endswith(":") and not line.startswith("name:"):
            assert "#" in line, f"{path.name}: no source comment on {line!r}"


def test_fipo_32b_carries_every_knob_of_table_2():
    generated = overrides_of("qwen2.5-32b", "fipo")
    for key, expected in TABLE_2_FIPO_32B.items():
        assert generated.get(key) == expected, key


def test_dapo_baseline_differs_from_fipo_exactly_where_table_2_says():
    fipo, dapo = overrides_of("qwen2.5-32b", "fipo"), overrides_of("qwen2.5-32b", "dapo")
    changed = {key for key in fipo.keys() & dapo.keys() if fipo[key] != dapo[key]}
    assert changed == {f"{LOSS}.loss_mode", f"{ACTOR}.ppo_mini_batch_size"}
    assert (dapo[f"{LOSS}.loss_mode"], dapo[f"{ACTOR}.ppo_mini_batch_size"]) == ("vanilla", "32")
    fipo_only = {f"{LOSS}.{knob}" for knob in ("decay_rate", "gamma", "future_kl_clip_low", "future_kl_clip_high",
                                                 "future_kl_clip_ratio", "future_kl_clip_high_only",
                                                 "safety_thresh", "future_kl_start", "future_kl_window",
                                                 "future_kl_average")}
    assert fipo.keys() - dapo.keys() == fipo_only
    assert dapo.keys() <= fipo.keys()


def test_math_7b_recipes_follow_table_3():
    fipo, dapo = overrides_of("qwen2.5-math-7b", "fipo"), overrides_of("qwen2.5-math-7b", "dapo")
    assert (fipo[f"{ROLLOUT}.n"], dapo[f"{ROLLOUT}.n"]) == ("32", "16")
    assert (fipo["data.max_response_length"], dapo["data.max_response_length"]) == ("10240", "8192")
    assert (fipo[f"{OVERLONG}.len"], dapo[f"{OVERLONG}.len"]) == ("2048", "4096")
    assert (fipo[f"{ACTOR}.ppo_mini_batch_size"], dapo[f"{ACTOR}.ppo_mini_batch_size"]) == ("64", "32")
    # influence clip [0.8, 1.2], safety threshold 3.0
    assert (fipo[f"{LOSS}.future_kl_clip_low"], fipo[f"{LOSS}.future_kl_clip_high"]) == ("0.2", "0.2")
    assert fipo[f"{LOSS}.safety_thresh"] == "3.0"
    assert fipo["+actor_rollout_ref.model.override_config.max_position_embeddings"] == "32768"
    assert fipo["actor_rollout_ref.model.path"] == "Qwen/Qwen2.5-Math-7B"


def test_tiny_recipe_trains_on_cpu_with_nothing_to_download():
    experiment = config.load(recipes.recipe_path("tiny"))
    assert experiment.trainer.device == "cpu" and experiment.cluster.launcher == "local"
    assert all(path.startswith("builtin:") for path in experiment.asset_paths())
    assert experiment.algorithm.reward_function == "fipo_cli.toy_task:compute_score"
    # More than one mini-batch per step: later updates are off-policy, so Future-KL is not trivially 0.
    assert experiment.data.train_batch_size // experiment.trainer.mini_batch_size >= 2
    overrides = overrides_of("tiny", "fipo")
    assert overrides["trainer.device"] == "cpu"
    assert overrides[f"{ACTOR}.strategy"] == "fsdp2"
    assert overrides["reward.custom_reward_function.path"] == "'pkg://fipo_cli.toy_task'"


def test_smoke_recipe_fits_one_gpu():
    experiment = config.load(recipes.recipe_path("qwen2.5-0.5b"))
    assert (experiment.cluster.launcher, experiment.cluster.total_gpus) == ("local", 1)
    assert "NOT the paper's recipe" in recipes.recipe_path("qwen2.5-0.5b").read_text()


def test_the_length_lab_differs_from_its_baseline_only_in_the_loss_and_has_room_to_grow():
    fipo, dapo = overrides_of("tiny-reasoner", "fipo"), overrides_of("tiny-reasoner", "dapo")
    changed = {key for key in fipo.keys() & dapo.keys() if fipo[key] != dapo[key]}
    assert changed == {f"{LOSS}.loss_mode"} and dapo.keys() <= fipo.keys()
    assert (fipo[f"{LOSS}.decay_rate"], fipo[f"{LOSS}.future_kl_clip_high"]) == ("32.0", "0.2")  # Table 2
    experiment = config.load(recipes.recipe_path("tiny-reasoner"))
    assert experiment.trainer.device == "cpu" and all(path.startswith("builtin:") for path in experiment.asset_paths())
    assert fipo["reward.custom_reward_function.path"] == "'pkg://fipo_cli.assets.binary_numbers'"
    assert experiment.trainer.total_training_steps is not None  # the run's length, whatever the epoch holds
    from fipo_cli.assets import binary_numbers

    longest = max(len(binary_numbers.Problem((1,) * bits).response(stepwise=True)) for bits in binary_numbers.BITS)
    # The longest stepwise answer (plus its end token) leaves most of the response length free, and the
    # overlong penalty starts beyond it: length can grow without being cut or penalised.
    assert longest + 1 < experiment.data.max_response_length - experiment.algorithm.overlong_buffer_len
    assert experiment.data.max_response_length >= 96
    assert experiment.data.train_batch_size // experiment.trainer.mini_batch_size >= 2  # Future-KL is not 0


def test_kept_samples_go_into_the_run_directory_only_when_asked():
    experiment = config.load(recipes.recipe_path("tiny-reasoner"))

    def overrides(keep: bool) -> dict[str, str]:
        experiment.trainer.keep_samples = keep
        lines = verl_overrides.experiment_overrides(experiment, experiment_name="e", checkpoint_dir=Path("/r/c"),
                                                    hydra_dir=Path("/r/h"), wandb=False, worker_env={},
                                                    samples_dir=Path("/r/samples"))
        return dict(line.split("=", 1) for line in lines)

    kept = overrides(True)
    assert (kept["trainer.rollout_data_dir"], kept["trainer.validation_data_dir"]) == ("/r/samples/train",
                                                                                       "/r/samples/validation")
    assert not {"trainer.rollout_data_dir", "trainer.validation_data_dir"} & overrides(False).keys()
