"""Graders: dapo (verl's training reward, checked against verl's own code), math-verify, and
grading many samples in worker processes that survive hung, failing and crashing graders."""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from fipo_cli.core.errors import EXIT_USAGE, FipoError, UsageError
from fipo_cli.eval.graders import (
    DapoGrader,
    MathVerifyGrader,
    Verdict,
    compare_graders,
    grade_samples,
    make_grader,
    vote_classes,
)

# (response, reference answer, dapo's extracted answer, dapo's verdict) — the training reward's
# behaviour, written out so that it is checked even where verl is not installed.
DAPO_CASES = [
    ("Step 1 ... so the walk takes 204 minutes.\nAnswer: 204", "204", "204", True),
    ("Answer: 025", "25", "025", False),  # strings differ: only integer_answers makes them equal
    ("Answer: 25", "025", "25", False),
    ("Answer: 12\nWait, I made an error.\nAnswer: 13", "13", "13", True),  # the last line wins
    ("Answer: 13\nAnswer: 12", "13", "12", False),
    ("Final answer: 7", "7", "7", True),  # the pattern is case-insensitive and unanchored
    ("Answer: $\\frac{1}{2}$", "\\frac{1}{2}", "\\frac{1}{2}", True),
    ("Answer: \\frac12", "\\frac{1}{2}", "\\frac{1}{2}", True),  # shorthand TeX expanded
    ("Answer: 1/2", "\\frac{1}{2}", "1/2", False),  # dapo compares strings, not values
    ("Answer: 0.5", "\\frac{1}{2}", "0.5", False),
    ("Answer: \\sqrt2", "\\sqrt{2}", "\\sqrt{2}", True),
    ("Answer: \\pi", "\\pi", "\\pi", True),
    ("Answer: 10 cm", "10", "10", True),  # units are removed
    ("Answer: 90^\\circ", "90", "90", True),
    ("Answer: 1,000 dollars", "1000", "1000", True),
    ("Answer: x = 5", "5", "5", True),  # the part after the last "="
    ("Answer: \\text{(B)}", "(B)", "(B)", True),
    ("Answer: \\boxed{42}", "42", "42", True),
    ("So the answer is \\boxed{42}.", "42", "42", True),  # no "Answer:" line: the \boxed{} fallback
    ("So the answer is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", "\\frac{1}{2}", True),
    ("So the answer is \\boxed{ 42 }.", "42", " 42 ", False),  # the fallback compares verbatim
    ("\\boxed{42}" + "." * 95, "42", None, False),  # box outside the last 100 characters
    ("Answer: 42" + "." * 300, "42", None, False),  # answer line outside the last 300 characters
    ("x" * 5000 + "\nAnswer: 42", "42", "42", True),  # long reasoning, answer at the end
    ("Answer: 5\n" + "y" * 295, "5", None, False),  # verl cuts before the line: no answer
    ("I could not solve it.", "7", None, False),
    ("", "7", None, False),
    ("Answer:\n7", "7", "7", True),  # "\s*" after the colon spans the line break
    ("answer: ∞", "∞", "∞", True),
]


# (response, reference, math-verify's verdict).
MATH_VERIFY_CASES = [
    ("Answer: 204", "204", True),
    ("The answer is $\\frac{1}{2}$.", "\\frac{1}{2}", True),
    ("The answer is $\\frac{1}{2}$.", "1/2", True),
    ("The answer is $\\frac{1}{2}$.", "0.5", True),
    ("Answer: 1/2", "\\frac{1}{2}", True),
    ("Answer: 0.5", "\\frac{1}{2}", True),
    ("So \\boxed{\\frac{1}{3}}", "\\frac{1}{2}", False),
    ("Thus $x = \\boxed{\\sqrt{2}}$.", "\\sqrt{2}", True),
    ("Thus $x = \\boxed{\\sqrt{3}}$.", "\\sqrt{2}", False),
    ("The area is $\\boxed{\\pi}$", "\\pi", True),
    ("Answer: $10$ cm", "10", True),
    ("Answer: 12\nHmm, no.\nAnswer: 13", "13", True),
    ("I could not solve it.", "7", False),
    ("", "7", False),
]


def load_verl_math_dapo():
    """verl's math_dapo.py, loaded from the installed verl without importing verl (and torch)."""
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("verl is not installed (the `train` extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "utils" / "reward_score" / "math_dapo.py"
    module_spec = importlib.util.spec_from_file_location("verl_math_dapo_under_test", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


# (response, reference, correct): references the way MATH writes them, graded as math_verify
# grades a gold (a \\boxed{} answer), never changed by delimiters wrapped around them.
REFERENCE_CASES = [
    ("Answer: 36", "\\$36", True),  # an escaped dollar: money, not a delimiter
    ("The total is $\\boxed{18.90}$", "\\$18.90", True),
    ("Answer: 32348", "\\$32,\\!348", True),
    ("Answer: $1000$", "1 000", True),  # LaTeX ignores the space: one number, not 1*0
    ("Answer: $0$", "1 000", False),
    ("Answer: 1000", "1\\,000", True),
    ("Answer: 58500", "58,500", True),
    ("So $\\boxed{1 000}$", "1000", True),  # spaced thousands in a response too
    ("Answer: 204", "204", True),  # plain numbers
    ("Answer: -2.5", "-5/2", True),
    ("Answer: 3\\sqrt{13}", "3\\sqrt{13}", True),  # a bare formula on the answer line
    ("Answer: 3\\sqrt{13}", "3\\sqrt{12}", False),
    ("Answer: \\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", True),
    ("Answer: 12 square units", "12", True),  # prose on the line: math_verify reads the response
    ("Answer: \\text{Evelyn}", "\\text{Evelyn}", True),
    ("Answer: 204.", "204", True),  # a closing full stop is not part of the answer
    ("\\boxed{4} is it.\nAnswer: 7", "4", True),  # math_verify's own order: a box outranks an answer line
    ("Answer: \\left( 3, \\frac{\\pi}{2} \\right)", "3", False),  # the whole tuple, not its first number
    ("Answer: x \\in [-2,7]", "x \\in [-2,7]", True),
]


MATH500_FILES = [
    Path("/work/shared/data/math500.jsonl"),
    Path(__file__).resolve().parents[2] / "fipo_cli" / "data" / "bundled" / "math500.jsonl",
]


# How a model may write a reference answer: boxed, on the DAPO prompt's answer line, inline.
FORMS = {
    "boxed": "So the answer is $\\boxed{{{}}}$.",
    "answer line": "Some reasoning.\nAnswer: {}",
    "inline": "So the answer is ${}$.",
}


# sympy needs ~14 s to decide that these differ (it expands both): a pathological sample.
SLOW = ("Answer: $(x+y+z+1)^{29}(x+y+z+2)$", "(x+y+z+1)^{30}")


@dataclass(frozen=True)
class TroubleGrader:
    """Test-only: hangs on "HANG", raises on "RAISE", kills its process on "CRASH", else dapo."""

    name: ClassVar[str] = "trouble"

    def warm_up(self) -> None:
        """Nothing to load."""

    def grade(self, response: str, answer: str) -> Verdict:
        if response == "HANG":
            while True:
                time.sleep(60)
        if response == "RAISE":
            raise RuntimeError("grader bug")
        if response == "CRASH":
            os._exit(3)
        return DapoGrader().grade(response, answer)


@dataclass(frozen=True)
class BrokenGrader:
    """Test-only: cannot start (a missing library)."""

    name: ClassVar[str] = "broken"

    def warm_up(self) -> None:
        raise FipoError("the broken grader needs libbroken", hint="pip install libbroken")

    def grade(self, response: str, answer: str) -> Verdict:
        raise AssertionError("never called")


def run_guarded(function, *args, **kwargs):
    """Run ``function`` in a thread and fail (instead of hanging the suite) if it never returns."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "grading hung"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.mark.parametrize(("response", "answer", "extracted", "correct"), DAPO_CASES)
def test_dapo_grader_on_the_table(response, answer, extracted, correct):
    assert DapoGrader().grade(response, answer) == Verdict(extracted, correct)


@pytest.mark.verl
def test_dapo_grader_gives_verls_verdicts_on_every_case():
    math_dapo = load_verl_math_dapo()
    extra = [  # cases whose expected values are not written out above: verl decides
        ("Answer: \\dfrac{3}{4} inches", "\\frac{3}{4}"),
        ("Answer: $5$.", "5"),
        ("The answer: \\mbox{yes}", "yes"),
        ("Answer: [INVALID]\n\\boxed{9}", "9"),  # verl's own sentinel as text
        ("Answer: 3\\text{ and }4", "3,4"),
        ("Answer: \\overline{AB}", "AB"),
        ("\\boxed{\\boxed{7}}", "7"),
        ("\\boxed{7", "7"),  # unbalanced brace: no box
    ]
    for response, answer in [(r, a) for r, a, _, _ in DAPO_CASES] + extra:
        score = math_dapo.compute_score(response, answer)
        verdict = DapoGrader().grade(response, answer)
        prediction = score["pred"] if score["pred"] != "[INVALID]" else None
        assert (verdict.extracted, verdict.correct) == (prediction, score["acc"]), (response, answer)


def test_integer_answers_compare_values():
    grader = DapoGrader(integer_answers=True)
    assert grader.grade("Answer: 025", "25") == Verdict("25", True)
    assert grader.grade("Answer: 25", "025") == Verdict("25", True)
    assert grader.grade("So \\boxed{007}", "7") == Verdict("7", True)
    assert grader.grade("Answer: 026", "25") == Verdict("26", False)
    # Not both integers: the plain verdict stands.
    assert grader.grade("Answer: 2.5", "25") == Verdict("2.5", False)
    assert grader.grade("Answer: \\frac{1}{2}", "\\frac{1}{2}") == Verdict("\\frac{1}{2}", True)


@pytest.mark.parametrize(("response", "answer", "correct"), MATH_VERIFY_CASES)
def test_math_verify_grader_on_the_table(response, answer, correct):
    pytest.importorskip("math_verify")
    verdict = MathVerifyGrader().grade(response, answer)
    assert verdict.correct is correct
    assert verdict.error is None
    assert (verdict.extracted is None) == (response in ("", "I could not solve it."))


def test_math_verify_extracts_a_canonical_answer():
    pytest.importorskip("math_verify")
    grader = MathVerifyGrader()
    # \frac{1}{2} and 1/2 are the same answer for cons@n.
    assert grader.grade("So $\\boxed{\\frac{1}{2}}$", "0.5").extracted == grader.grade("Answer: 1/2", "0.5").extracted
    assert MathVerifyGrader(integer_answers=True).grade("Answer: 025", "25") == Verdict("25", True)


@pytest.mark.parametrize(("response", "answer", "correct"), REFERENCE_CASES)
def test_math_verify_reads_references_as_gold_answers(response, answer, correct):
    pytest.importorskip("math_verify")
    verdict = MathVerifyGrader().grade(response, answer)
    assert (verdict.correct, verdict.error) == (correct, None), verdict


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("path", MATH500_FILES, ids=["shared", "bundled"])
def test_every_math500_reference_scores_correct_against_itself(path, form):
    pytest.importorskip("math_verify")
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 500
    grader = MathVerifyGrader()
    wrong = [
        (row["id"], row["answer"])
        for row in rows
        if not grader.grade(FORMS[form].format(row["answer"]), row["answer"]).correct
    ]
    assert wrong == [], f"{len(rows) - len(wrong)}/500 in {form} form"


def test_math_verify_own_timeout_ends_a_pathological_sample_in_process():
    pytest.importorskip("math_verify")
    grader = MathVerifyGrader(timeout_s=1)
    grader.warm_up()
    started = time.monotonic()
    assert grader.grade(*SLOW) == Verdict(None, False, "timeout")
    assert time.monotonic() - started < 8
    assert grader.grade("Answer: 5", "5") == Verdict("5", True)  # the process goes on


def test_time_limit_reaches_math_verify_in_the_workers():
    pytest.importorskip("math_verify")
    verdicts = run_guarded(grade_samples, [SLOW[0], "Answer: 5"], [SLOW[1], "5"],
                           [make_grader("math-verify", time_limit=6.0)], time_limit=6.0)
    assert verdicts["math-verify"] == [Verdict(None, False, "timeout"), Verdict("5", True)]


def test_make_grader_gives_math_verify_a_share_of_the_time_limit():
    assert make_grader("math-verify", time_limit=30).timeout_s == 10
    assert make_grader("math-verify", time_limit=2).timeout_s is None  # under a second: only the worker's kill
    assert make_grader("math-verify").timeout_s is None
    assert make_grader("dapo", time_limit=30) == DapoGrader()


def test_math_verify_vote_classes_join_equivalent_answers():
    pytest.importorskip("math_verify")
    grader = MathVerifyGrader()
    responses = ["Answer: \\frac{3}{4}", "Answer: 0.75", "no answer here", "Answer: \\frac14", "Answer: 3/4",
                 "Answer: \\frac{1}{\\sqrt2}", "Answer: \\frac{\\sqrt2}{2}"]
    assert grader.vote_classes(responses) == [0, 0, None, 1, 0, 2, 2]


def test_vote_classes_in_workers_and_a_failed_problem_falls_back():
    pytest.importorskip("math_verify")
    problems = [["Answer: 0.5", "Answer: 1/2"], ["Answer: 2", "Answer: 3"]]
    classes = run_guarded(vote_classes, MathVerifyGrader(), problems, workers=2)
    assert classes == [[0, 0], [0, 1]]


def test_math_verify_reports_an_unparseable_reference():
    pytest.importorskip("math_verify")
    verdict = MathVerifyGrader().grade("Answer: 5", "")
    assert verdict.correct is False
    assert "could not be parsed" in verdict.error


def test_make_grader_names_the_graders():
    assert make_grader("dapo", integer_answers=True) == DapoGrader(integer_answers=True)
    assert make_grader("math-verify") == MathVerifyGrader()
    with pytest.raises(UsageError) as caught:
        make_grader("math_verify")
    assert caught.value.exit_code == EXIT_USAGE
    assert "'math_verify'" in caught.value.message and "did you mean 'math-verify'" in caught.value.message


def test_grade_samples_survives_hung_failing_and_crashing_graders():
    responses = ["Answer: 1", "HANG", "Answer: 3", "RAISE", "HANG", "CRASH", "Answer: 7"]
    answers = ["1", "2", "3", "4", "5", "6", "7"]
    progress = []
    # One worker: every later sample needs the replacement of the worker killed before it.
    verdicts = run_guarded(
        grade_samples,
        responses,
        answers,
        [DapoGrader(), TroubleGrader()],
        workers=1,
        time_limit=1.0,
        on_progress=lambda done, total: progress.append((done, total)),
    )
    trouble = verdicts["trouble"]
    assert [v.correct for v in trouble] == [True, False, True, False, False, False, True]
    assert [v.error for v in trouble][:5] == [None, "timeout", None, "RuntimeError: grader bug", "timeout"]
    assert trouble[5].error == "worker died (exit code 3)"
    assert trouble[6] == Verdict("7", True)
    # The other grader saw every sample, undisturbed.
    assert verdicts["dapo"] == [DapoGrader().grade(r, a) for r, a in zip(responses, answers, strict=True)]
    assert progress[0] == (0, 7) and progress[-1] == (7, 7)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)


def test_grade_samples_keeps_input_order_across_workers():
    pytest.importorskip("math_verify")
    responses = [f"Reasoning ...\nAnswer: {i}" for i in range(40)]
    answers = [str(i if i % 3 else i + 1) for i in range(40)]
    verdicts = run_guarded(grade_samples, responses, answers, [make_grader("dapo"), make_grader("math-verify")],
                           workers=2)
    for name in ("dapo", "math-verify"):
        assert [v.extracted for v in verdicts[name]] == [str(i) for i in range(40)]
        assert [v.correct for v in verdicts[name]] == [i % 3 != 0 for i in range(40)]


def test_grade_samples_without_samples_starts_no_worker():
    progress = []
    verdicts = grade_samples([], [], [DapoGrader()], on_progress=lambda d, t: progress.append((d, t)))
    assert verdicts == {"dapo": []}
    assert progress == [(0, 0)]


def test_a_grader_that_cannot_start_stops_the_run_with_its_message():
    with pytest.raises(FipoError) as caught:
        run_guarded(grade_samples, ["Answer: 1"], ["1"], [BrokenGrader()])
    assert caught.value.message == "the broken grader needs libbroken"
    assert caught.value.hint == "pip install libbroken"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"responses": ["a", "b"], "answers": ["1"]}, "2 responses but 1 answers"),
        ({"workers": 0}, "--workers 0"),
        ({"time_limit": 0}, "--time-limit 0"),
        ({"time_limit": float("nan")}, "--time-limit nan"),
        ({"time_limit": float("inf")}, "--time-limit inf"),
        ({"graders": [DapoGrader(), DapoGrader()]}, "each at most once"),
        ({"graders": []}, "at least one grader"),
    ],
)
def test_grade_samples_rejects_bad_arguments(kwargs, words):
    arguments = {"responses": ["a"], "answers": ["1"], "graders": [DapoGrader()], **kwargs}
    with pytest.raises(UsageError, match=words):
        grade_samples(**arguments)


def test_compare_graders_lists_disagreements_and_missing_answers():
    verdicts = {
        "dapo": [Verdict("1", True), Verdict(None, False), Verdict("1/2", False), Verdict(None, False, "timeout")],
        "math-verify": [Verdict("1", True), Verdict("7", False), Verdict("1/2", True), Verdict(None, False)],
    }
    comparison = compare_graders(verdicts)
    assert comparison.disagreements == (2,)
    assert comparison.correct == {"dapo": 1, "math-verify": 2}
    assert comparison.no_answer == {"dapo": 2, "math-verify": 1}
    assert comparison.errors == {"dapo": 1, "math-verify": 0}
    assert comparison.to_json()["samples"] == 4
    with pytest.raises(UsageError, match="different numbers of samples"):
        compare_graders({"dapo": [Verdict(None, False)], "math-verify": []})


def test_verdict_round_trips_through_json():
    verdict = Verdict(None, False, "timeout")
    assert verdict.to_json() == {"extracted": None, "correct": False, "error": "timeout"}
    assert Verdict.from_json(verdict.to_json()) == verdict
