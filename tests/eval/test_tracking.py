"""W&B logging of evaluations, with the real wandb in offline mode, read back from its ``.wandb`` files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fipo_cli.eval import tracking
from fipo_cli.eval.pipeline import Scores, score
from fipo_cli.eval.samples import Sample
from fipo_cli.experiment import config
from fipo_cli.runs.experiments import ExperimentDir
from fipo_cli.runs.layout import RUN_CONFIG_FILE
from fipo_cli.runs.status import RunStatus, write_status
from fipo_cli.tracking import identity as wandb_identity
from fipo_cli.training import train

import wandb_records

pytest.importorskip("wandb")  # the core install has no wandb; verl (the `train` extra) brings it


SECRET = "fipo-test-secret-0123456789abcdef"


PROJECT = "fipo-test"


RUN_NAME = "20261122-013000"


TRAINING_STEPS = range(1, 7)


COLUMNS = [
    "prompt_id", "sample_index", "answer", "response", "token_count", "finish_reason",
    "dapo_extracted", "dapo_correct", "math-verify_extracted", "math-verify_correct",
]


@pytest.fixture(scope="module")
def graded() -> tuple[Scores, list[Sample]]:
    """Two problems, two samples each, graded by fipo's own pipeline: 3 of 4 correct, one without an answer."""
    samples = [
        Sample("p1", 0, "The sum is 204.\nAnswer: 204", answer="204", token_count=12, finish_reason="stop"),
        Sample("p1", 1, "Answer: 204", answer="204", token_count=5, finish_reason="stop"),
        Sample("p2", 0, "So the count is 33.\nAnswer: 033", answer="33", token_count=14, finish_reason="stop"),
        Sample("p2", 1, "Let me think " * 400, answer="33", token_count=2048, finish_reason="length"),
    ]
    return score(samples, primary_grader="dapo", integer_answers=True), samples


def make_training_run(root: Path, state: str, monkeypatch: pytest.MonkeyPatch, mode: str = "offline") -> Path:
    """A run directory as ``fipo train`` leaves it, with its W&B run made the way verl makes it."""
    experiment = config.build({"name": "exp", "model": {"path": "Qwen/Qwen2.5-0.5B"},
                               "tracking": {"project": PROJECT, "mode": mode}})
    plan = train.plan_run(experiment, ExperimentDir(root / "exp", root / "exp" / "fipo.yaml"), RUN_NAME,
                          inherited=dict(os.environ))
    run_dir = plan.run_dir
    run_dir.mkdir(parents=True)
    (run_dir / RUN_CONFIG_FILE).write_text(experiment.to_yaml())
    write_status(run_dir, RunStatus(state=state, launcher="local", wandb_run_id=plan.env.get("WANDB_RUN_ID")))
    if mode == "disabled":
        return run_dir
    import wandb

    # verl.utils.tracking.Tracking: wandb.init(project, name, entity from WANDB_ENTITY, config),
    # then log(data, step=global_step), inside the environment fipo's plan gives the trainer.
    with monkeypatch.context() as trainer_env:
        for name, value in plan.env.items():
            trainer_env.setenv(name, value)
        run = wandb.init(project=PROJECT, name=f"exp-{RUN_NAME}", entity=os.environ.get("WANDB_ENTITY"),
                         config={"trainer": {"project_name": PROJECT}})
        for step in TRAINING_STEPS:
            run.log(data={"actor/pg_loss": 1.0 / step, "response_length/mean": 100.0 * step}, step=step)
        run.finish()
    return run_dir


def written(wandb_dir: Path) -> list[Path]:
    """The ``.wandb`` files under ``wandb_dir`` once complete: ``run.finish()`` returns before
    wandb-core has written every record; ``wandb.teardown()`` waits for it."""
    import wandb

    wandb.teardown()
    return wandb_records.run_files(wandb_dir)


def assert_nothing_secret(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET.encode() not in path.read_bytes(), f"the API key leaked into {path}"


def test_checkpoint_eval_appends_to_the_training_run_at_its_step(tmp_path, monkeypatch, graded):
    scores, samples = graded
    run_dir = make_training_run(tmp_path, "succeeded", monkeypatch)
    training_id = wandb_identity.wandb_run_id("exp", RUN_NAME)

    assert tracking.log_run_checkpoint(run_dir, 4, "aime24", scores, samples) == training_id

    first, second = written(run_dir / "wandb")
    assert wandb_records.run_id(first) == wandb_records.run_id(second) == training_id
    assert wandb_records.run_record(second).project == PROJECT
    assert [row["_step"] for row in wandb_records.history(first)] == list(TRAINING_STEPS)
    (row,) = wandb_records.history(second)
    dapo, math_verify = scores.accuracy["dapo"], scores.accuracy["math-verify"]
    assert row["eval/step"] == 4
    assert row["eval/aime24/avg@2"] == dapo.avg.value == 0.75
    assert row["eval/aime24/avg@2_stderr"] == dapo.stderr
    assert row["eval/aime24/cons@2"] == dapo.cons.value
    assert [row["eval/aime24/pass@1"], row["eval/aime24/pass@2"]] == [dapo.pass_at[1].value, dapo.pass_at[2].value]
    assert row["eval/aime24/math-verify/avg@2"] == math_verify.avg.value
    assert row["eval/aime24/response_tokens/mean"] == scores.lengths.mean
    assert row["eval/aime24/truncation_rate"] == 0.25
    assert row["eval/aime24/no_answer/dapo"] == 1
    assert {key: row[key] for key in tracking.metrics("aime24", scores)} == tracking.metrics("aime24", scores)
    # Charted against the checkpoint's step, not W&B's own _step.
    defined = [r.metric for r in wandb_records.records(second) if r.WhichOneof("record_type") == "metric"]
    assert any(m.glob_name == "eval/aime24/*" and m.step_metric == "eval/step" for m in defined)

    logged = row["eval/aime24/samples"]
    assert (logged["_type"], logged["nrows"], logged["ncols"]) == ("table-file", 4, len(COLUMNS))
    table = wandb_records.table(second, logged)
    assert table["columns"] == COLUMNS
    lines = [dict(zip(COLUMNS, line, strict=True)) for line in table["data"]]
    assert [(line["prompt_id"], line["sample_index"]) for line in lines] == [sample.key for sample in samples]
    assert lines[2] == {
        "prompt_id": "p2", "sample_index": 0, "answer": "33", "response": "So the count is 33.\nAnswer: 033",
        "token_count": 14, "finish_reason": "stop", "dapo_extracted": "33", "dapo_correct": True,
        "math-verify_extracted": "33", "math-verify_correct": True,
    }
    assert "characters cut" in lines[3]["response"] and lines[3]["dapo_extracted"] is None
    assert_nothing_secret(tmp_path)


def test_a_run_that_may_still_log_steps_gets_a_linked_eval_run(tmp_path, monkeypatch, graded):
    scores, samples = graded
    run_dir = make_training_run(tmp_path, "running", monkeypatch)
    training_id = wandb_identity.wandb_run_id("exp", RUN_NAME)

    assert tracking.log_run_checkpoint(run_dir, 2, "aime24", scores, samples) == f"{training_id}-eval"
    assert tracking.log_run_checkpoint(run_dir, 4, "aime24", scores, samples) == f"{training_id}-eval"

    training, *linked = written(run_dir / "wandb")
    assert wandb_records.run_id(training) == training_id and len(linked) == 2
    record = wandb_records.run_record(linked[0])
    assert (record.run_id, record.display_name) == (f"{training_id}-eval", f"exp-{RUN_NAME}-eval")
    assert record.job_type == "eval" and list(record.tags) == ["fipo", "Qwen2.5-0.5B"]
    assert wandb_records.config(linked[0])["training_run_id"] == training_id
    assert [wandb_records.history(path)[0]["eval/step"] for path in linked] == [2, 4]


def test_model_eval_is_a_separate_eval_run(tmp_path, graded, capfd):
    scores, samples = graded
    settings = {"benchmark": "aime24", "model": "/models/Qwen/Qwen2.5-0.5B", "samples": 2, "temperature": 1.0}
    out_dir = tmp_path / "evals" / "aime24"

    run_id = tracking.log_model_eval("aime24", settings, scores, samples, project=PROJECT, entity=None,
                                     mode="offline", out_dir=out_dir)
    # W&B's own console lines ("wandb: W&B syncing is set to `offline`", "wandb leet") stay out of
    # fipo eval's output: fipo names the run itself.
    printed = capfd.readouterr()
    assert "wandb" not in printed.out + printed.err

    (path,) = written(out_dir / "wandb")
    record = wandb_records.run_record(path)
    assert (record.run_id, record.project, record.job_type) == (run_id, PROJECT, "eval")
    assert record.display_name == "aime24-Qwen/Qwen2.5-0.5B"
    assert {key: wandb_records.config(path)[key] for key in settings} == settings
    (row,) = wandb_records.history(path)
    assert "eval/step" not in row
    assert {key: row[key] for key in tracking.metrics("aime24", scores)} == tracking.metrics("aime24", scores)
    assert wandb_records.table(path, row["eval/aime24/samples"])["columns"] == COLUMNS
    assert wandb_records.summary(path)["eval/aime24/avg@2"] == 0.75
    assert_nothing_secret(tmp_path)


def test_disabled_tracking_logs_nothing(tmp_path, monkeypatch, graded):
    scores, samples = graded
    run_dir = make_training_run(tmp_path / "disabled", "succeeded", monkeypatch, mode="disabled")
    assert tracking.log_run_checkpoint(run_dir, 4, "aime24", scores, samples) is None
    out_dir = tmp_path / "evals"
    assert tracking.log_model_eval("aime24", {}, scores, samples, project=PROJECT, entity=None, mode="disabled",
                                   out_dir=out_dir) is None
    # An explicit WANDB_MODE=disabled wins over the run's own offline setting.
    offline_run = make_training_run(tmp_path / "offline", "succeeded", monkeypatch)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.log_run_checkpoint(offline_run, 4, "aime24", scores, samples) is None
    assert len(written(offline_run / "wandb")) == 1  # the training run's own
    assert not (run_dir / "wandb").exists() and not out_dir.exists()


def test_the_table_keeps_both_ends_of_long_responses_and_every_problem():
    long = "a" * 10_000 + "Answer: 7"
    short = tracking.shorten(long)
    assert short.startswith("a" * tracking.RESPONSE_HEAD_CHARS) and short.endswith("Answer: 7")
    assert len(short) < tracking.RESPONSE_HEAD_CHARS + tracking.RESPONSE_TAIL_CHARS + 50
    assert tracking.shorten("Answer: 7") == "Answer: 7"
    samples = [Sample(f"p{p}", i, "") for p in range(3) for i in range(4)]
    assert {s.key for s in tracking.table_samples(samples, 7)} == {(f"p{p}", i) for p in range(3) for i in range(2)}
    assert len(tracking.table_samples(samples, 12)) == 12


def test_the_reader_joins_records_split_across_blocks(tmp_path):
    import wandb

    text = "".join(chr(0x41 + i % 26) for i in range(100_000))  # one record spans four 32 KiB blocks
    with wandb.init(project=PROJECT, dir=tmp_path, mode="offline", settings=wandb.Settings(quiet=True)) as run:
        for step in range(40):
            run.log({"text": text if step == 20 else "", "value": step})
    (path,) = written(tmp_path / "wandb")
    rows = wandb_records.history(path)
    assert [row["value"] for row in rows] == list(range(40)) and rows[20]["text"] == text

    damaged = bytearray(path.read_bytes())
    damaged[40_000] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(wandb_records.FormatError, match="checksum"):
        wandb_records.history(path)
