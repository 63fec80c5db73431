"""Training for real: `fipo train` runs verl 0.9.1's own trainer (main_ppo and its v1 trainer,
FSDP2 with gloo, vLLM's CPU build as the rollout, TransferQueue, the DAPO reward manager) on the
`tiny` recipe: a 2-layer Qwen2 and the toy addition task, both built locally.

A run needs about 9 GiB for its whole process tree and a minute to start, so the tests share one
project, run one after another, and each asserts as much as a user would look at. Nothing here
is a stand-in: the FIPO loss is the one verl calls through its registry, under its bf16 autocast.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import pieces

pieces.require('training')

from fipo_run import run_fipo

pytestmark = [pytest.mark.verl, pytest.mark.training]


wandb_records = pytest.importorskip("wandb_records")


STEPS = 20  # the tiny recipe's trainer.total_training_steps


#: Reward is the share of an answer's three digits in place. A model that does not learn scores
#: about 0.05 at every step; the mean of 5 steps of 64 samples each varies by about ±0.01 around
#: that (the per-step means of the first steps of these runs, measured: 0.038-0.064). A gain of 0.05
#: is 5× that noise, and a learner gets it: FIPO and DAPO both gain 0.15-0.25 within 20 steps.
LEARNING_MARGIN = 0.05


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the tiny recipe as `fipo` (FIPO) and `dapo` (the DAPO baseline)."""
    project = tmp_path_factory.mktemp("project")
    for name, algo in (("fipo", "fipo"), ("dapo", "dapo")):
        result = run_fipo(project, "init", name, "--model", "tiny", "--algo", algo, timeout=900)
        assert result.returncode == 0, result.stderr
    return project


@pytest.fixture(autouse=True)
def one_model_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One cache of built-in assets for the whole test session (or FIPO_TEST_CACHE's)."""
    cache = os.environ.get("FIPO_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "fipo-cache")
    monkeypatch.setenv("FIPO_CACHE_DIR", cache)


def only_run(project: Path, experiment: str) -> Path:
    (run,) = (project / "experiments" / experiment / "runs").iterdir()
    return run


def metrics(path: Path) -> dict[int, dict[str, float]]:
    return {row["step"]: row["data"] for row in map(json.loads, path.read_text().splitlines())}


def tail(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-4000:]


def ray_processes() -> dict[int, str]:
    """Ray's processes on this machine (pid: command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "raylet" in command or "gcs_server" in command or command.startswith("ray::"):
            found[int(entry.name)] = command
    return found


@pytest.fixture
def no_ray_left():
    """Fails the test if Ray processes it started outlive it."""
    before = set(ray_processes())
    yield
    left = {pid: command for pid, command in ray_processes().items() if pid not in before}
    assert left == {}, f"Ray processes left behind: {left}"


def assert_learned(by_step: dict[int, dict[str, float]]) -> None:
    rewards = [by_step[step]["critic/score/mean"] for step in sorted(by_step)]
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + LEARNING_MARGIN, f"mean reward of the first 5 steps {first:.3f}, of the last 5 {last:.3f}"


def test_fipo_trains_learns_resumes_is_evaluated_and_reported(project: Path, no_ray_left):
    result = run_fipo(project, "train", "fipo", timeout=900)
    assert result.returncode == 0, tail(result)
    run = only_run(project, "fipo")
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "succeeded" and status["exit_code"] == 0
    # fipo says where everything is, after the run's view
    assert f"fipo: run fipo/{run.name} succeeded (last step {STEPS} of {STEPS} planned)" in result.stderr
    assert "ended after step" not in result.stderr
    assert f"{run / 'checkpoints'} (steps 10, 20)" in result.stderr
    assert "wandb sync" in result.stderr
    # The view without a terminal: a line per step, from verl's metrics file; no traceback anywhere (not
    # even in train.log: W&B is torn down in the trainer's Ray actor, see verl_plugin.with_wandb_teardown).
    console = result.stdout + result.stderr
    assert "Traceback" not in console and "Traceback" not in (run / "train.log").read_text()
    step_lines = [line for line in result.stdout.splitlines() if line.startswith("fipo: step ")]
    assert [line.split(" · ")[0] for line in step_lines] == [f"fipo: step {k}/{STEPS}" for k in range(1, STEPS + 1)]
    assert "fipo: counted, not shown: " in result.stdout and "TransferQueue thread cap" in result.stdout
    assert len(result.stdout.splitlines()) < 60  # verl prints ~1,460 lines: they are in train.log

    by_step = metrics(run / "metrics.jsonl")
    for k in (1, STEPS):
        assert f"reward {by_step[k]['critic/rewards/mean']:.3g} · " in step_lines[k - 1]
        assert f"Future-KL {by_step[k]['actor/fipo_future_kl_mean']:.3g} · " in step_lines[k - 1]
    assert step_lines[-1].endswith("checkpoint 20")
    assert sorted(by_step) == list(range(1, STEPS + 1))
    # Two mini-batches per step: the second is off-policy, so Future-KL and the weights move.
    assert any(abs(row["actor/fipo_future_kl_mean"]) > 1e-5 for row in by_step.values())
    assert any(row["actor/fipo_influence_weight_max"] > 1.0 + 1e-4 for row in by_step.values())
    assert all(row["actor/fipo_influence_weight_min"] >= 1.0 - 1e-6 for row in by_step.values())  # [1, 1.2]
    assert all(0.0 < row["actor/fipo_pos_is_median"] < 2.0 for row in by_step.values())
    assert_learned(by_step)
    assert (run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS)
    # verl's Hydra wrote into the run, not into the user's working directory.
    assert not (project / "outputs").exists() and (run / "hydra").is_dir()

    (first_file,) = wandb_records.run_files(run / "wandb")
    assert wandb_records.run_id(first_file) == status["wandb_run_id"]
    assert wandb_records.config(first_file)["fipo"]["algorithm"]["name"] == "fipo"
    logged = [row for row in wandb_records.history(first_file) if "actor/fipo_future_kl_mean" in row]
    assert len(logged) == STEPS

    # Resume: verl continues from the step-20 checkpoint into the same W&B run.
    result = run_fipo(project, "train", "fipo", "--resume", run.name, f"trainer.total_training_steps={STEPS + 2}", timeout=900)
    assert result.returncode == 0, tail(result)
    assert "Traceback" not in result.stdout + result.stderr
    assert [line.split(" · ")[0] for line in result.stdout.splitlines() if line.startswith("fipo: step ")] == [
        f"fipo: step {STEPS + 1}/{STEPS + 2}", f"fipo: step {STEPS + 2}/{STEPS + 2}"]
    assert sorted(metrics(run / "metrics.jsonl")) == [STEPS + 1, STEPS + 2]
    assert sorted(metrics(run / "metrics.earlier.jsonl")) == list(range(1, STEPS + 1))
    assert (run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == str(STEPS + 2)
    first_file, second_file = wandb_records.run_files(run / "wandb")
    assert wandb_records.run_id(second_file) == status["wandb_run_id"]
    assert [row["_step"] for row in wandb_records.history(second_file)] == [STEPS + 1, STEPS + 2]

    # The latest checkpoint, evaluated: verl's shards merged into a model and sampled.
    result = run_fipo(project, "eval", "aime24", "--run", f"fipo/{run.name}", "--step", "latest", "--samples", "2",
                  "--limit", "2", "--max-tokens", "8", "--json", timeout=900)
    assert result.returncode == 0, tail(result)
    assert "wandb:" not in result.stdout + result.stderr  # W&B's own console lines; fipo names the W&B run itself
    assert f"W&B: run {status['wandb_run_id']}" in result.stderr
    results = json.loads((run / "eval" / "aime24" / f"step_{STEPS + 2}" / "results.json").read_text())
    assert results["settings"]["model"].endswith(f"global_step_{STEPS + 2}/actor/huggingface_merged")
    assert (results["graders"]["dapo"]["problems"], results["graders"]["dapo"]["n"]) == (2, 2)
    samples = (run / "eval" / "aime24" / f"step_{STEPS + 2}" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 4 and all(json.loads(line)["response"] for line in samples)

    result = run_fipo(project, "report", "fipo", "--json", timeout=900)
    assert result.returncode == 0, tail(result)
    html = project / json.loads(result.stdout)["html"]
    assert run.name in html.read_text() and (html.parent / "length_percentiles.png").is_file()


#: Knob values that make a short run of the tiny recipe drop responses and apply the safety rule (a
#: user's settings, not stand-ins). Its ratios stay below 1.4 (``actor/fipo_neg_is_max``), so with the
#: paper's c = 10 nothing is ever dropped: a dual-clip ratio of 1.05 drops each response with Â < 0 in
#: which two tokens' ratios passed 1.05 (26-35 % of them in the steps measured), and a safety threshold
#: of 1.05 clamps such tokens' weights. 2048 tokens per micro-batch hold a whole mini-batch (32
#: responses of at most 56 tokens): see the test for why.
DROPPING_KNOBS = ("algorithm.clip_ratio_c=1.05", "algorithm.safety_thresh=1.05", "trainer.max_tokens_per_gpu=2048")


def test_a_short_run_drops_responses_its_loss_is_the_mean_over_kept_tokens_and_its_data_runs_out(
        project: Path, tmp_path: Path, no_ray_left):
    """One short run (each costs a minute to start) with knobs that drop responses, on data that runs out.

    The loss: the documented token-mean, Σ_m (V_m/V)·(S_m/K_m) over micro-batches m, is S/K when a mini-batch
    is one micro-batch on one rank: the mean over its kept tokens. verl logs the loss (``actor/pg_loss``, the
    sum of the micro-batches' losses) and the loss's own S_m/K_m (``actor/fipo_pg_loss_kept_mean``), each
    averaged over the step's two mini-batches: they must agree. With verl's count of every valid token as the
    denominator, the loss of a mini-batch with drops would be S/V, smaller by the dropped tokens' share (logged
    too). Why one micro-batch: verl averages a loss's metrics over micro-batches and mini-batches, and a
    kept-token mean over several micro-batches is a ratio of sums that no average of per-micro-batch values
    gives back.

    The data: 16 rows at 8 prompts a step. verl 0.9.1 counts an epoch as 16 // 8 = 2 steps, whatever its data
    loader does, so trainer.total_epochs 1 ends a run of 4 planned steps after step 2.
    """
    import pyarrow.parquet as pq

    from fipo_cli.assets import toy_task

    train, _ = toy_task.write_data(tmp_path)
    short = tmp_path / "short.parquet"
    pq.write_table(pq.read_table(train).slice(0, 16), short)
    result = run_fipo(project, "init", "drops", "--model", "tiny", "--algo", "fipo")
    assert result.returncode == 0, result.stderr
    result = run_fipo(project, "train", "drops", f"data.train_files=[{short}]", "trainer.total_training_steps=4",
                      "trainer.total_epochs=1", "trainer.save_freq=-1", "trainer.test_freq=-1", *DROPPING_KNOBS,
                      "verl.actor_rollout_ref.rollout.max_num_seqs=7", timeout=900)
    assert result.returncode == 0, tail(result)
    run = only_run(project, "drops")
    by_step = metrics(run / "metrics.jsonl")
    assert sorted(by_step) == [1, 2]
    with_drops = {step: row for step, row in by_step.items() if row["actor/fipo_dropped_seq_frac"] > 0}
    assert with_drops, {step: row["actor/fipo_neg_is_max"] for step, row in by_step.items()}
    for step, row in by_step.items():
        assert row["actor/pg_loss"] == pytest.approx(row["actor/fipo_pg_loss_kept_mean"], rel=1e-5, abs=1e-7), step
        assert 0.0 <= row["actor/fipo_dropped_token_frac"] < 1.0
    # verl's own count (every valid token) would have shrunk such a step's loss by up to the dropped tokens' share.
    assert all(row["actor/fipo_dropped_token_frac"] > 0.01 for row in with_drops.values())
    # The safety rule acted (Â < 0 and r > 1.05), and with bounds [1, 1.2] it can lower weights but never raise one.
    assert any(row["actor/fipo_safety_clamped_frac"] > 0 for row in by_step.values())
    assert all(row["actor/fipo_safety_raised_frac"] == 0.0 for row in by_step.values())

    assert "trainer.total_epochs 1 ends the run after 2 of the 4 steps" in result.stderr  # said before it started
    assert f"fipo: run drops/{run.name} succeeded (last step 2 of 2 planned)" in result.stderr
    assert "ended after step 2, short of trainer.total_training_steps (4): its data ran out" in result.stderr
    # The verl key reached verl's resolved config (the trainer prints it), after fipo's own settings.
    assert "'max_num_seqs': 7" in (run / "train.log").read_text()


def test_dapo_trains_the_same_way_and_learns(project: Path, no_ray_left):
    result = run_fipo(project, "train", "dapo", timeout=900)
    assert result.returncode == 0, tail(result)
    run = only_run(project, "dapo")
    by_step = metrics(run / "metrics.jsonl")
    assert sorted(by_step) == list(range(1, STEPS + 1))
    assert not any(key.startswith("actor/fipo_") for key in by_step[1])  # verl's vanilla loss
    assert_learned(by_step)


def test_a_failing_run_says_why_in_fipos_own_words(project: Path, no_ray_left):
    result = run_fipo(project, "train", "fipo", "trainer.total_training_steps=1", "actor_rollout_ref=x", timeout=300)
    assert result.returncode == 2 and "actor_rollout_ref" in result.stderr  # not a key of fipo's: nothing runs
    result = run_fipo(project, "train", "fipo", "model.path=/no/such/model", "trainer.total_training_steps=1", timeout=600)
    assert result.returncode == 1
    failed = sorted((project / "experiments" / "fipo" / "runs").iterdir())[-1]
    assert json.loads((failed / "status.json").read_text())["state"] == "failed"
    report = result.stderr[result.stderr.index("fipo: training failed"):]
    assert f"run fipo/{failed.name} exited with code 1 and is recorded as failed" in report
    assert str(failed / "train.log") in report and "/no/such/model" in report
    # The view showed the trainer's error as it came, whole: its traceback and the exception naming the path.
    assert "Traceback (most recent call last):" in result.stdout and "/no/such/model" in result.stdout


#: The lab's test run: a few steps, validated before the first and after the last.
LAB_STEPS = 3


def test_the_length_lab_trains_with_room_to_grow_validates_each_length_and_keeps_its_samples(
        tmp_path_factory: pytest.TempPathFactory, small_reasoner: Path, no_ray_left):
    """`--model tiny-reasoner` for a few steps, on the small warm start of the test session (the full
    one takes minutes to build: benchmarks/bench_tiny_reasoner.py measures it)."""
    from fipo_cli.assets import binary_numbers as task
    from fipo_cli.experiment import config, recipes

    recipe = config.load(recipes.recipe_path("tiny-reasoner"))
    val_n, cap = recipe.rollout.val_n, recipe.data.max_response_length
    project = tmp_path_factory.mktemp("lab")
    assert run_fipo(project, "init", "lab", "--model", "tiny-reasoner").returncode == 0
    result = run_fipo(project, "train", "lab", f"model.path={small_reasoner}",
                      f"trainer.total_training_steps={LAB_STEPS}", f"trainer.test_freq={LAB_STEPS}",
                      "trainer.save_freq=-1", "trainer.keep_samples=true", timeout=900)
    assert result.returncode == 0, tail(result)
    run = only_run(project, "lab")
    by_step = metrics(run / "metrics.jsonl")
    assert sorted(by_step) == list(range(LAB_STEPS + 1))  # step 0: the validation before training
    first = by_step[1]
    # Both ways of answering are sampled: lengths spread out, well below the cap.
    assert first["response_length/min"] <= 4 and first["response_length/max"] > 8
    assert first["response_length/mean"] < cap / 2 and first["response_length/clip_ratio"] < 0.5
    assert "actor/fipo_future_kl_mean" in first
    for step in (0, LAB_STEPS):  # verl's validation, one data source per number of bits
        accuracy = {k: by_step[step][f"val-core/{task.validation_source(k)}/acc/mean@{val_n}"] for k in task.BITS}
        assert all(0.0 <= value <= 1.0 for value in accuracy.values())

    # verl's own dumps: the reward verl gave each response is the task's score of it.
    train_dumps = sorted((run / "samples" / "train").glob("*.jsonl"))
    assert sorted(int(path.stem) for path in train_dumps) == list(range(1, LAB_STEPS + 1))
    validation_dump = (run / "samples" / "validation" / "0.jsonl").read_text().splitlines()
    assert len(validation_dump) == val_n * task.VALIDATION_PROBLEMS_PER_BITS * len(task.BITS)
    samples = [json.loads(line) for line in validation_dump + train_dumps[0].read_text().splitlines()]
    buffer = recipe.algorithm.overlong_buffer_len
    unpenalised = [sample for sample in samples if len(sample["output"]) < cap - buffer - 1]  # no overlong penalty
    assert len(unpenalised) > 0.9 * len(samples)
    assert all(sample["score"] == task.compute_score("", sample["output"], sample["gts"]) for sample in unpenalised)

    result = run_fipo(project, "report", "lab", "--json", timeout=300)
    assert result.returncode == 0, tail(result)
    charts = {chart["name"] for chart in json.loads(result.stdout)["charts"]}
    assert {"length_percentiles", "future_kl", "validation", "accuracy_vs_length_validation"} <= charts
