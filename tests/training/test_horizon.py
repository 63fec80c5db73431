"""How long a run trains (fipo_cli/training/horizon.py), against verl 0.9.1's own rule written out here.

verl 0.9.1's v1 trainer (trainer/ppo/v1/trainer_base.py) sets steps_per_epoch = len(dataset) //
train_batch_size and runs `while epoch < total_epochs and step <= total_training_steps`, epoch =
(step - 1) // steps_per_epoch: it stops after min(total_training_steps, total_epochs × steps_per_epoch)
steps. tests/test_training.py shows a real run stopping there.
"""

from __future__ import annotations

import pytest

from fipo_cli.experiment import config, recipes
from fipo_cli.training import horizon
from fipo_cli.verl_adapter import overrides as verl_overrides

PUBLISHED_ROWS = 1_791_700  # DAPO-Math-17k as published: 17,917 prompts × 100
DISTINCT_PROMPTS = 17_917


def verl_steps(rows: int, batch: int, total_epochs: int, total_training_steps: int | None) -> int:
    """verl 0.9.1's loop, stepped through: the step count at which it stops."""
    steps_per_epoch = rows // batch
    limit = total_training_steps if total_training_steps is not None else steps_per_epoch * total_epochs
    step = 1
    while (step - 1) // steps_per_epoch < total_epochs and step <= limit:
        step += 1
    return step - 1


def test_the_official_horizon_is_one_epoch_of_generation_rounds_as_steps():
    assert PUBLISHED_ROWS // 2048 == 874  # the official launcher: one epoch in rounds of 4 × 512 prompts
    for model in ("qwen2.5-32b", "qwen2.5-math-7b"):
        for algo in recipes.ALGORITHMS:
            experiment = config.load(recipes.recipe_path(model, algo))
            planned = horizon.plan(experiment, rows=DISTINCT_PROMPTS)
            assert planned.steps == 874 == verl_steps(DISTINCT_PROMPTS, 512, verl_overrides.verl_total_epochs(
                experiment.trainer), experiment.trainer.total_training_steps)
            assert not planned.data_runs_out and planned.warnings() == []
            assert planned.to_json()["prompts"] == 874 * 512
    # What one epoch would have been, counted as verl 0.9.1 counts it: the run of the issue, and 4× the paper's.
    assert verl_steps(DISTINCT_PROMPTS, 512, 1, None) == 34
    assert verl_steps(PUBLISHED_ROWS, 512, 1, None) == 3499


@pytest.mark.parametrize("rows, epochs, steps", [(16, 1, 4), (100, 2, 7), (100, 3, 50), (1000, None, 20), (64, 1, None)])
def test_planned_steps_follow_verls_loop(rows, epochs, steps):
    experiment = config.build(config.read_experiment(recipes.recipe_path("tiny")),
                              {"trainer.total_epochs": epochs, "trainer.total_training_steps": steps})
    planned = horizon.plan(experiment, rows=rows)
    assert planned.steps == verl_steps(rows, 8, verl_overrides.verl_total_epochs(experiment.trainer), steps)
    runs_out = steps is not None and planned.steps < steps
    assert planned.data_runs_out == runs_out
    if runs_out:
        (warning,) = planned.warnings()
        assert warning.startswith(f"trainer.total_epochs {epochs} ends the run after {planned.steps} of the {steps}")
        assert planned.ended_early(planned.steps).startswith(
            f"ended after step {planned.steps}, short of trainer.total_training_steps ({steps}): its data ran out")
    else:
        assert planned.ended_early(planned.steps) is None


def test_every_recipe_states_its_horizon_in_steps_and_no_epoch_limit():
    for model in recipes.MODELS:
        for algo in recipes.ALGORITHMS:
            trainer = config.load(recipes.recipe_path(model, algo)).trainer
            assert trainer.total_training_steps and trainer.total_epochs is None, (model, algo)
            assert verl_overrides.verl_total_epochs(trainer) == trainer.total_training_steps


def test_the_plan_shows_prompts_responses_and_the_gpu_hours_the_time_limit_reserves():
    experiment = config.load(recipes.recipe_path("qwen2.5-32b"), {"cluster.time_limit": "7-00:00:00"})
    line = horizon.plan(experiment, rows=DISTINCT_PROMPTS).describe()
    assert line == ("horizon: 874 steps (trainer.total_training_steps) × 512 prompts = 447,488 prompts, 7,159,808 "
                    "responses; 25 passes over 17,917 training rows; 128 GPUs × cluster.time_limit 7-00:00:00 = "
                    "21,504 GPU-hours reserved (11.5 min a step)")
    unknown = horizon.plan(config.load(recipes.recipe_path("qwen2.5-32b"), {"trainer.total_epochs": 2}), rows=None)
    assert unknown.steps == 874 and unknown.epoch_limit is None  # rows unknown: the cap cannot be counted here
    few = horizon.plan(experiment, rows=100)
    assert few.warnings() == ["the training data has 100 rows, fewer than data.train_batch_size (512): verl 0.9.1 "
                              "would train no step"]
