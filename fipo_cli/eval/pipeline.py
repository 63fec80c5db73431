"""One evaluation: generate the missing samples, grade every sample, compute the metrics.

An evaluation directory holds::

    eval_settings.json   what the samples were drawn with (model, engine, sampling, prompt)
    samples.jsonl        every generation, appended as it finishes; verdicts added by grading
    results.json         the metrics of every grader, the response lengths, grader agreement

Running the same evaluation again regenerates nothing: only samples missing from
``samples.jsonl`` are drawn, each from its own seed, so an interrupted evaluation ends
with exactly the samples an uninterrupted one would have drawn. Asking for more samples
per problem draws only the new ones.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.core.files import atomic_write_json
from fipo_cli.core.locks import LockHeld, describe_owner, exclusive
from fipo_cli.data.prompts import PROMPT_FORMATS
from fipo_cli.eval.engines.base import Engine, Message, Request, SamplingSettings
from fipo_cli.eval.graders import (
    DEFAULT_TIME_LIMIT,
    GRADERS,
    GraderComparison,
    MathVerifyGrader,
    Verdict,
    compare_graders,
    grade_samples,
    make_grader,
    vote_classes,
)
from fipo_cli.eval.metrics import AccuracyReport, LengthReport, accuracy_report, length_report
from fipo_cli.eval.problems import Benchmark
from fipo_cli.eval.problems import integer_answers as all_integer
from fipo_cli.eval.samples import Sample, SampleWriter, read_samples, write_samples
from fipo_cli.runs.layout import EVAL_LOCK_FILE, EVAL_SETTINGS_FILE, EVALS_DIR, RESULTS_FILE, SAMPLES_FILE

#: The grader whose verdicts make the headline numbers, by prompt format: the "Answer:" rule
#: for the DAPO prompt (what training rewards), LaTeX equivalence otherwise.
PRIMARY_GRADER = {"dapo": "dapo", "boxed": "math-verify", "raw": "math-verify"}
#: How cons@n forms its vote, per grader (written into results.json).
CONS_RULES = {
    "dapo": "one vote per extracted answer string (verl's normalised string, as the training reward compares)",
    "math-verify": (
        "answers that math-verify verifies as equal vote together: each answer joins the first class whose "
        "first answer verifies equal to it (verify(first, answer)), else starts one; a class is reported by "
        "its first answer; a problem whose classing fails or times out votes by answer string"
    ),
    "common": "samples without an answer do not vote; a tie counts as correct only if every tied class is correct",
}


class Interrupted(FipoError):
    """Ctrl-C during an evaluation: what was kept, and that rerunning resumes (exit 130, as for SIGINT)."""

    exit_code = 130


@dataclass(frozen=True)
class EvalSettings:
    """How samples are drawn (from a checked :class:`~fipo_cli.eval.request.EvalRequest`). All but ``samples``
    must match to reuse an earlier evaluation's samples."""

    benchmark: str
    model: str
    engine: str
    samples: int
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    prompt_format: str
    chat_template: bool

    def identity(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key != "samples"}

    @property
    def sampling(self) -> SamplingSettings:
        return SamplingSettings(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, seed=self.seed)


def default_out_dir(settings: EvalSettings) -> Path:
    """``evals/<model>/<benchmark>``, the model named by its last path parts."""
    return model_out_dir(settings.model, settings.benchmark)


def model_out_dir(model: str, benchmark: str) -> Path:
    """:func:`default_out_dir` from the model and benchmark alone (``fipo eval --slurm`` needs it before any settings)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "/".join(Path(model).parts[-2:])).strip("_") or "model"
    return EVALS_DIR / name / benchmark


def check_directory(out_dir: Path, settings: EvalSettings) -> None:
    """Refuse ``out_dir`` when its samples were drawn with other settings."""
    path = out_dir / EVAL_SETTINGS_FILE
    if not path.exists():
        return
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"{path} is not a JSON settings file ({error})",
                         hint="delete it (and the samples beside it) or pass another --out") from None
    differing = sorted(key for key, value in settings.identity().items() if earlier.get(key) != value)
    if differing:
        changes = ", ".join(f"{key}: {earlier.get(key)!r} → {getattr(settings, key)!r}" for key in differing)
        raise UsageError(
            f"{out_dir} holds samples drawn with other settings ({changes})",
            hint="pass --out to evaluate into another directory, or delete that one",
        )


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    """Hold ``directory``'s writer lock for the ``with`` block: two ``fipo eval`` runs into one ``--out``
    would interleave their samples. UsageError naming the other writer when one holds it.

    The directory is created (with its parents) for the lock; what the block leaves empty is removed
    again, so an evaluation that wrote nothing (its model did not load) leaves no directory behind.
    """
    created = [folder for folder in (directory, *directory.parents) if not folder.exists()]  # leaf first
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{directory}: cannot create the evaluation directory ({error.strerror})",
                         hint="pass --out a directory you can write") from None
    path = directory / EVAL_LOCK_FILE
    held_lock = contextlib.ExitStack()
    try:
        held_lock.enter_context(exclusive(path))
    except LockHeld as held:
        raise UsageError(
            f"{directory} is being written by {describe_owner(held.owner)}; "
            "one evaluation directory takes one writer at a time",
            hint=f"wait for it to finish, or pass another --out; if that process is gone, delete {path}",
        ) from None
    except PermissionError as error:
        raise UsageError(f"{directory} is not writable ({error.strerror})",
                         hint="pass --out a directory you can write") from None
    try:
        with held_lock:  # the lock file goes first, then what the evaluation left empty
            yield
    finally:
        for folder in created:
            try:
                folder.rmdir()
            except OSError:  # not empty: it holds the evaluation
                break


def missing_requests(benchmark: Benchmark, settings: EvalSettings, existing: Sequence[Sample]) -> list[Request]:
    """One request per (problem, sample index) not yet in the samples file."""
    done = {sample.key for sample in existing}
    as_prompt = PROMPT_FORMATS[settings.prompt_format]
    return [
        Request(problem.id, index, (Message("user", as_prompt(problem.problem)),))
        for problem in benchmark.problems
        for index in range(settings.samples)
        if (problem.id, index) not in done
    ]


def generate(
    benchmark: Benchmark,
    settings: EvalSettings,
    out_dir: Path,
    open_engine: Callable[[], Engine],
    on_sample: Callable[[int, int], None] | None = None,
) -> int:
    """Draw every missing sample into ``out_dir/samples.jsonl``; returns how many were drawn.

    The engine is opened only when something is missing. ``on_sample(done, total)``
    reports progress.
    """
    check_directory(out_dir, settings)
    path = out_dir / SAMPLES_FILE
    requests = missing_requests(benchmark, settings, read_samples(path, repair=True))
    if not requests:
        return 0
    answers = {problem.id: problem.answer for problem in benchmark.problems}
    engine = open_engine()
    try:
        # Recorded only now: a run that could not even load its model claims nothing.
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / EVAL_SETTINGS_FILE, asdict(settings))
        with SampleWriter(path) as writer:
            if on_sample:
                on_sample(0, len(requests))
            for done, generation in enumerate(engine.generate(requests, settings.sampling), 1):
                writer.append(
                    Sample(
                        prompt_id=generation.prompt_id,
                        sample_index=generation.sample_index,
                        response=generation.text,
                        answer=answers[generation.prompt_id],
                        prompt=generation.prompt,
                        token_count=generation.token_count,
                        finish_reason=generation.finish_reason,
                    )
                )
                if on_sample:
                    on_sample(done, len(requests))
    finally:
        engine.close()
    return len(requests)


@dataclass(frozen=True)
class Scores:
    """Everything computed from graded samples, ready for results.json and the summary table."""

    primary_grader: str
    accuracy: dict[str, AccuracyReport]  # by grader name
    lengths: LengthReport | None  # None when token counts are missing (samples from other tools)
    comparison: GraderComparison

    def to_json(self) -> dict[str, Any]:
        return {
            "primary_grader": self.primary_grader,
            "cons_rule": CONS_RULES,
            "graders": {name: report.to_json() for name, report in self.accuracy.items()},
            "lengths": None if self.lengths is None else self.lengths.to_json(),
            "grader_agreement": self.comparison.to_json(),
        }


def score(
    samples: list[Sample],
    *,
    primary_grader: str,
    integer_answers: bool,
    workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    on_graded: Callable[[int, int], None] | None = None,
) -> Scores:
    """Grade every sample with every grader (verdicts are stored on the samples) and compute the metrics.

    cons@n votes by equivalence for math-verify (:func:`vote_classes`), by string for dapo.
    """
    unanswered = [sample for sample in samples if sample.answer is None]
    if unanswered:
        raise UsageError(
            f"{len(unanswered)} samples have no reference answer (first: prompt {unanswered[0].prompt_id!r})",
            hint="pass --bench NAME to take answers from a benchmark, or add an answer field to each line",
        )
    ordered = _in_order(samples)
    graders = [make_grader(name, integer_answers=integer_answers, time_limit=time_limit) for name in GRADERS]
    by_problem: dict[str, list[Sample]] = defaultdict(list)
    for sample in ordered:
        by_problem[sample.prompt_id].append(sample)
    # One progress count: every sample graded, then every problem's answers put in classes.
    steps = len(ordered) + len(by_problem)
    verdicts = grade_samples(
        [sample.response for sample in ordered], [sample.answer for sample in ordered], graders,
        workers=workers, time_limit=time_limit,
        on_progress=on_graded and (lambda done, _: on_graded(done, steps)),
    )
    for index, sample in enumerate(ordered):
        sample.verdicts = {name: verdicts[name][index].to_json() for name in verdicts}
    equivalent = next(grader for grader in graders if isinstance(grader, MathVerifyGrader))
    found = vote_classes(
        equivalent, [[s.response for s in group] for group in by_problem.values()], workers=workers,
        time_limit=time_limit, on_progress=on_graded and (lambda done, _: on_graded(len(ordered) + done, steps)),
    )
    classes = {MathVerifyGrader.name: dict(zip(by_problem, found, strict=True))}
    accuracy = {
        name: accuracy_report(_by_problem(ordered, grader_verdicts), classes=classes.get(name))
        for name, grader_verdicts in verdicts.items()
    }
    lengths = None
    if all(sample.token_count is not None for sample in ordered):
        lengths = length_report(
            [sample.token_count for sample in ordered],
            [sample.finish_reason for sample in ordered],
            [verdict.correct for verdict in verdicts[primary_grader]],
        )
    return Scores(primary_grader, accuracy, lengths, compare_graders(verdicts))


def _in_order(samples: Sequence[Sample]) -> list[Sample]:
    """By problem, then sample index: the order of samples.jsonl and of grading."""
    return sorted(samples, key=lambda sample: sample.key)


def _by_problem(samples: Sequence[Sample], verdicts: Sequence[Verdict]) -> dict[str, list[Verdict]]:
    grouped: dict[str, list[Verdict]] = defaultdict(list)
    for sample, verdict in zip(samples, verdicts, strict=True):
        grouped[sample.prompt_id].append(verdict)
    return dict(grouped)


def write_results(out_dir: Path, samples: list[Sample], scores: Scores, settings: dict[str, Any] | None) -> Path:
    """samples.jsonl with verdicts and results.json, each replaced atomically."""
    write_samples(out_dir / SAMPLES_FILE, _in_order(samples))
    results = out_dir / RESULTS_FILE
    atomic_write_json(results, {"settings": settings, **scores.to_json()})
    return results


def evaluate(
    benchmark: Benchmark,
    settings: EvalSettings,
    out_dir: Path,
    open_engine: Callable[[], Engine],
    *,
    workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    on_sample: Callable[[int, int], None] | None = None,
    on_graded: Callable[[int, int], None] | None = None,
) -> Scores:
    """Generate what is missing, then grade and score this evaluation's samples.

    Only the benchmark's problems and the first ``settings.samples`` samples of each are
    scored; samples.jsonl keeps every sample drawn so far. The directory's writer lock is
    held throughout (:func:`writer_lock`); Ctrl-C ends with :class:`Interrupted`.
    """
    check_directory(out_dir, settings)  # before taking the lock: a refused run leaves no directory
    with writer_lock(out_dir):
        try:
            generate(benchmark, settings, out_dir, open_engine, on_sample)
            every = read_samples(out_dir / SAMPLES_FILE)
            chosen = scored_samples(every, benchmark, settings)
            scores = score(
                chosen,
                primary_grader=PRIMARY_GRADER[settings.prompt_format],
                integer_answers=benchmark.integer_answers,
                workers=workers,
                time_limit=time_limit,
                on_graded=on_graded,
            )
        except KeyboardInterrupt:
            kept = len(read_samples(out_dir / SAMPLES_FILE, repair=True))
            raise Interrupted(
                f"interrupted: {kept} samples kept in {out_dir / SAMPLES_FILE}; "
                "run the same command again to resume (only the missing samples are drawn)"
            ) from None
        write_results(out_dir, every, scores, asdict(settings))
    return scores


def scored_samples(samples: Sequence[Sample], benchmark: Benchmark, settings: EvalSettings) -> list[Sample]:
    """The samples an evaluation scores: the benchmark's problems, the first ``settings.samples`` of each."""
    ids = {problem.id for problem in benchmark.problems}
    return [sample for sample in samples if sample.prompt_id in ids and sample.sample_index < settings.samples]


def score_file(
    path: Path,
    benchmark: Benchmark | None,
    *,
    primary_grader: str = "dapo",
    workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    on_graded: Callable[[int, int], None] | None = None,
) -> tuple[Scores, Path]:
    """Re-grade a samples file (fipo's or another tool's, see :mod:`fipo_cli.eval.samples`).

    An evaluation directory's samples.jsonl is updated in place; any other file is left as
    it is, and ``<stem>.graded.jsonl`` and ``<stem>.results.json`` are written beside it.
    Returns the scores and the results file.
    """
    if primary_grader not in GRADERS:
        raise UsageError(f"--grader {primary_grader!r}: choose one of {', '.join(GRADERS)}")
    check_samples_path(path)
    samples = read_samples(path)
    if not samples:
        raise UsageError(f"{path}: no samples to score (the file is empty)")
    _take_answers(samples, benchmark, path)
    integer_answers = benchmark.integer_answers if benchmark else all_integer(sample.answer for sample in samples)
    if (path.parent / EVAL_SETTINGS_FILE).is_file() and path.name == SAMPLES_FILE:
        with writer_lock(path.parent):  # an evaluation directory: rewritten in place, one writer
            samples = read_samples(path)  # as it is now that no one else writes it
            _take_answers(samples, benchmark, path)
            scores = score(samples, primary_grader=primary_grader, integer_answers=integer_answers, workers=workers,
                           time_limit=time_limit, on_graded=on_graded)
            settings = _settings_of(path.parent / EVAL_SETTINGS_FILE)
            return scores, write_results(path.parent, samples, scores, settings)
    scores = score(samples, primary_grader=primary_grader, integer_answers=integer_answers, workers=workers,
                   time_limit=time_limit, on_graded=on_graded)
    graded = path.with_name(f"{path.stem}.graded.jsonl")
    write_samples(graded, _in_order(samples))
    results = path.with_name(f"{path.stem}.results.json")
    atomic_write_json(results, {"settings": None, "samples_file": str(path), **scores.to_json()})
    return scores, results


def check_samples_path(path: Path) -> None:
    """UsageError unless ``path`` is an existing file (``fipo eval score FILE``)."""
    if not path.is_file():
        raise UsageError(f"{path}: {'not a file' if path.exists() else 'no such file'}",
                         hint="fipo eval score path/to/samples.jsonl")


def _take_answers(samples: Sequence[Sample], benchmark: Benchmark | None, path: Path) -> None:
    """Fill in the reference answers samples lack from ``benchmark`` (``--bench``)."""
    if benchmark is None:
        return
    answers = {problem.id: problem.answer for problem in benchmark.problems}
    unknown = sorted({s.prompt_id for s in samples if s.answer is None and s.prompt_id not in answers})
    if unknown:
        raise UsageError(f"{path}: prompt ids not in {benchmark.name}: {', '.join(unknown[:5])}")
    for sample in samples:
        sample.answer = sample.answer if sample.answer is not None else answers[sample.prompt_id]


def _settings_of(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise UsageError(f"{path} is not a JSON settings file ({error})", hint="restore or delete it") from None


def write_curve(path: Path, points: Sequence[tuple[int, Scores]]) -> Path:
    """``curve.json``: the headline metrics of every evaluated checkpoint, by training step."""
    rows = []
    for step, scores in sorted(points, key=lambda point: point[0]):
        report = scores.accuracy[scores.primary_grader]
        rows.append({
            "step": step,
            "grader": scores.primary_grader,
            f"avg@{report.n}": report.avg.value,
            f"cons@{report.n}": report.cons.value,
            f"pass@{report.n}": report.pass_at[report.n].value,
            "mean_response_tokens": None if scores.lengths is None else scores.lengths.mean,
        })
    atomic_write_json(path, {"points": rows})
    return path
