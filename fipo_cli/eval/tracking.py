"""W&B logging of evaluations: a checkpoint's into its training run, a model's into a run of its own.

What is logged (``B`` is the benchmark's name, ``n`` the samples per problem; the headline
grader is the one ``Scores.primary_grader`` names: ``dapo`` for the DAPO prompt, what
training rewards, ``math-verify`` otherwise)::

    eval/step                        the checkpoint's training step (checkpoint evaluations only)
    eval/B/avg@n                     the paper's Pass@1, headline grader
    eval/B/avg@n_stderr              its standard error over problems (absent for one problem)
    eval/B/cons@n                    majority vote
    eval/B/pass@k                    k = 1, 2, 4, …, n (unbiased estimator)
    eval/B/GRADER/avg@n              avg@n of every grader, so that runs with another headline compare
    eval/B/problems                  how many problems were scored (a --limit run shows here)
    eval/B/response_tokens/{mean,median,p90,max,mean_correct,mean_incorrect}
    eval/B/truncation_rate           share of responses cut at the length limit
    eval/B/no_answer/GRADER          responses in which the grader found no answer (count)
    eval/B/grading_errors/GRADER     responses the grader failed on, e.g. timed out (count)
    eval/B/grader_disagreements      responses the graders judged differently (count)
    eval/B/samples                   the samples as a W&B Table (see :func:`samples_table`)

The names keep results.json's ``avg@n`` / ``cons@n`` / ``pass@k`` spelling, with n in the name
as in the paper, and all sit under ``eval/`` so that W&B gives them their own panel section,
apart from verl's ``actor/``, ``critic/`` and ``val-core/`` metrics.

Where a checkpoint evaluation goes (:func:`log_run_checkpoint`): W&B keeps one history row
per ``_step`` and only ever appends, so rows cannot be put back at the checkpoint's step.
Instead every metric is charted against the custom step metric ``eval/step``
(``define_metric``), which holds the checkpoint's training step. The rows are appended to
the training run's own W&B run once the training run has succeeded. A run that is running,
failed or was cancelled gets a linked eval run instead (id ``<training id>-eval``, job type
``eval``, the training run's group and tags, its id in the config): a running trainer would
be a second writer to the same W&B run, and verl logs with an explicit step, so rows
appended before a resume would push the run's step past the steps the resumed training
still has to log, and W&B drops every step lower than the current one. Evaluations of one
run can thus land in both runs: those made before it succeeded in the linked one.

wandb is imported inside the functions: ``fipo --help`` never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fipo_cli.core.locks import exclusive
from fipo_cli.eval.pipeline import Scores
from fipo_cli.eval.samples import Sample
from fipo_cli.experiment import config
from fipo_cli.runs.layout import RUN_CONFIG_FILE, WANDB_DIR, WANDB_LOCK_FILE
from fipo_cli.runs.status import read_status
from fipo_cli.tracking.identity import wandb_tags
from fipo_cli.tracking.wandb_runs import resolve_mode, wandb_run

#: The custom x-axis of checkpoint evaluations: the checkpoint's training step.
STEP_METRIC = "eval/step"
#: Characters of a response kept in the table: its start (the approach) and its end (where
#: the answer is), the middle cut. Whole responses run to 20k tokens (~80 kB); 960 of them
#: per AIME checkpoint would make every table tens of MB to upload and too slow for W&B's
#: table view. samples.jsonl keeps every response whole.
RESPONSE_HEAD_CHARS = 500
RESPONSE_TAIL_CHARS = 1500
LINKED_SUFFIX = "-eval"
#: W&B's limit on a run id's length, which fipo's training run ids also respect.
MAX_RUN_ID = 128
#: Evaluations of one run log one after another (say aime24 and aime25 on two machines): each
#: resume must see the previous one's rows, or both append at the same ``_step`` and one row is
#: lost. A later one waits this long for the W&B lock (:data:`fipo_cli.runs.layout.WANDB_LOCK_FILE`).
WANDB_LOCK_WAIT_S = 900.0
#: On top of that when resuming the training run: its metadata (host, GPUs, command) and
#: requirements describe the training, so the evaluating process must not replace them.
_RESUME_SETTINGS = {"x_disable_meta": True, "x_save_requirements": False}


def metrics(benchmark: str, scores: Scores) -> dict[str, float | int]:
    """The scalar metrics of one evaluation under ``eval/<benchmark>/`` (names in the module docstring)."""
    prefix = f"eval/{benchmark}"
    headline = scores.accuracy[scores.primary_grader]
    n = headline.n
    values: dict[str, float | int] = {f"{prefix}/avg@{n}": headline.avg.value}
    if headline.stderr is not None:
        values[f"{prefix}/avg@{n}_stderr"] = headline.stderr
    values[f"{prefix}/cons@{n}"] = headline.cons.value
    values |= {f"{prefix}/pass@{k}": rate.value for k, rate in headline.pass_at.items()}
    values |= {f"{prefix}/{grader}/avg@{report.n}": report.avg.value for grader, report in scores.accuracy.items()}
    values[f"{prefix}/problems"] = headline.problems
    lengths = scores.lengths
    if lengths is not None:
        tokens = {
            "mean": lengths.mean, "median": lengths.median, "p90": lengths.p90, "max": lengths.max,
            "mean_correct": lengths.mean_correct, "mean_incorrect": lengths.mean_incorrect,
        }
        values |= {f"{prefix}/response_tokens/{name}": value for name, value in tokens.items() if value is not None}
        values[f"{prefix}/truncation_rate"] = lengths.truncated.value
    comparison = scores.comparison
    values |= {f"{prefix}/no_answer/{grader}": count for grader, count in comparison.no_answer.items()}
    values |= {f"{prefix}/grading_errors/{grader}": count for grader, count in comparison.errors.items()}
    values[f"{prefix}/grader_disagreements"] = len(comparison.disagreements)
    return values


def shorten(response: str) -> str:
    """``response`` with its middle cut when longer than the table keeps, saying how much was cut."""
    if len(response) <= RESPONSE_HEAD_CHARS + RESPONSE_TAIL_CHARS:
        return response
    cut = len(response) - RESPONSE_HEAD_CHARS - RESPONSE_TAIL_CHARS
    return f"{response[:RESPONSE_HEAD_CHARS]}\n[… {cut:,} characters cut …]\n{response[-RESPONSE_TAIL_CHARS:]}"


def table_samples(samples: Sequence[Sample], max_rows: int) -> list[Sample]:
    """The samples the table shows: all of them, or the first k of every problem when more than ``max_rows``.

    W&B cuts a logged table at ``wandb.Table.MAX_ROWS`` rows (10,000) without failing;
    MATH-500 × 32 samples is 16,000. Taking the same number of samples from every problem
    keeps every problem in the table instead of losing the last problems whole.
    """
    ordered = sorted(samples, key=lambda sample: sample.key)
    if len(ordered) <= max_rows:
        return ordered
    per_problem = max(1, max_rows // len({sample.prompt_id for sample in ordered}))
    return [sample for sample in ordered if sample.sample_index < per_problem][:max_rows]


def samples_table(samples: Sequence[Sample], graders: Sequence[str]) -> Any:
    """The samples as a ``wandb.Table``: one row per sample, the verdict of every grader in ``graders``.

    Columns: prompt_id, sample_index, answer (the reference), response (shortened, see
    :data:`RESPONSE_HEAD_CHARS`), token_count, finish_reason, then ``GRADER_extracted`` and
    ``GRADER_correct`` per grader.
    """
    import wandb

    columns = ["prompt_id", "sample_index", "answer", "response", "token_count", "finish_reason"]
    columns += [f"{grader}_{field}" for grader in graders for field in ("extracted", "correct")]
    rows = []
    for sample in table_samples(samples, wandb.Table.MAX_ROWS):
        row = [sample.prompt_id, sample.sample_index, sample.answer, shorten(sample.response), sample.token_count,
               sample.finish_reason]
        for grader in graders:
            verdict = sample.verdicts.get(grader, {})
            row += [verdict.get("extracted"), verdict.get("correct")]
        rows.append(row)
    return wandb.Table(columns=columns, data=rows)


def log_run_checkpoint(
    run_dir: Path, step: int, benchmark: str, scores: Scores, samples: Sequence[Sample]
) -> str | None:
    """Log the evaluation of a training run's checkpoint at ``step`` to the run's W&B run; returns that run's id.

    Project, entity and mode come from the run's ``config.yaml`` (mode by :func:`resolve_mode`),
    the W&B run id from its ``status.json``, and W&B's files go into the run
    directory, as in training. The rows go to the training run itself when it has
    succeeded, else to its linked eval run (see the module docstring): compare the
    returned id with the run's ``wandb_run_id`` to tell which. Returns None, logging
    nothing, when tracking is disabled or the run was trained without W&B.
    """
    run_dir = Path(run_dir)
    experiment = config.load(run_dir / RUN_CONFIG_FILE)
    tracking = experiment.tracking
    mode = resolve_mode(tracking.mode)
    status = read_status(run_dir)
    if mode == "disabled" or status.wandb_run_id is None:
        return None
    if status.state == "succeeded":
        init: dict[str, Any] = {"id": status.wandb_run_id, "settings": _RESUME_SETTINGS}
    else:
        name = tracking.run_name or f"{experiment.name}-{run_dir.name}"
        init = {
            "id": status.wandb_run_id[: MAX_RUN_ID - len(LINKED_SUFFIX)] + LINKED_SUFFIX,
            "name": name + LINKED_SUFFIX,
            "job_type": "eval",
            "group": tracking.group,
            "tags": wandb_tags(experiment),
            "config": {"training_run_id": status.wandb_run_id, "training_run_dir": str(run_dir.absolute())},
        }
    lock = run_dir / WANDB_DIR / WANDB_LOCK_FILE
    lock.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(lock, wait_s=WANDB_LOCK_WAIT_S), wandb_run(
        project=tracking.project, entity=tracking.entity, mode=mode, directory=run_dir, **init
    ) as run:
        # The glob covers metrics this evaluation adds later too; eval/step itself is
        # hidden (a chart of the step against itself says nothing).
        run.define_metric(STEP_METRIC, hidden=True)
        run.define_metric(f"eval/{benchmark}/*", step_metric=STEP_METRIC)
        run.log({STEP_METRIC: step, **_row(benchmark, scores, samples)})
        return run.id


def log_model_eval(
    benchmark: str,
    settings: Mapping[str, Any],
    scores: Scores,
    samples: Sequence[Sample],
    *,
    project: str,
    entity: str | None,
    mode: str,
    out_dir: Path,
) -> str | None:
    """Log the evaluation of a model to a new W&B run of job type ``eval``; returns its id.

    ``settings`` (the evaluation's settings, as in eval_settings.json) become the run's
    config; ``mode`` is a tracking mode as in an experiment, resolved by :func:`resolve_mode`
    (``auto`` is online with credentials; an explicit ``WANDB_MODE`` wins unless ``mode`` is
    ``disabled``). W&B's files go under ``out_dir``.
    Every call makes a new run. Returns None, logging nothing, when the mode is disabled.
    """
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    model = "/".join(Path(str(settings.get("model", "model"))).parts[-2:])
    with wandb_run(
        project=project, entity=entity, mode=mode, directory=Path(out_dir), name=f"{benchmark}-{model}",
        job_type="eval", config=dict(settings),
    ) as run:
        run.log(_row(benchmark, scores, samples))
        return run.id


def _row(benchmark: str, scores: Scores, samples: Sequence[Sample]) -> dict[str, Any]:
    """The one history row of an evaluation: its metrics and its samples table."""
    return {**metrics(benchmark, scores), f"eval/{benchmark}/samples": samples_table(samples, list(scores.accuracy))}
