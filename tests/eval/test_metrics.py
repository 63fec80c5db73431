"""Metrics against hand-computed values: avg@n and its standard error, cons@n and its tie rule,
pass@k against the direct binomial formula, response lengths, and bad input."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest

from fipo_cli.core.errors import EXIT_USAGE, ConfigError, UsageError
from fipo_cli.eval.graders import Verdict
from fipo_cli.eval.metrics import (
    Rate,
    accuracy_report,
    default_ks,
    length_report,
    majority_vote,
    pass_at_k,
    percentile,
    whole_percent,
)

R, W = True, False  # right, wrong


def verdicts(*pairs: tuple[str | None, bool]) -> list[Verdict]:
    return [Verdict(extracted, correct) for extracted, correct in pairs]


# Three problems, n = 4 samples each.
PROBLEMS = {
    # c = 3; "5" has 3 votes and is right: cons correct.
    "p1": verdicts(("5", R), ("5", R), ("5", R), ("7", W)),
    # c = 1; "8" has 2 votes, "9" 1, no answer does not vote: cons wrong.
    "p2": verdicts(("9", R), (None, W), ("8", W), ("8", W)),
    # c = 0; no sample gave an answer: cons wrong.
    "p3": verdicts((None, W), (None, W), (None, W), (None, W)),
}


def test_accuracy_report_by_hand():
    report = accuracy_report(PROBLEMS)
    assert report.n == 4 and report.problems == 3
    # avg@4 = (3/4 + 1/4 + 0/4) / 3 = 1/3
    assert report.avg.value == pytest.approx(1 / 3)
    assert report.avg.percent == 33
    # accuracies 3/4, 1/4, 0 around the mean 1/3: deviations 5/12, -1/12, -4/12;
    # s² = (25 + 1 + 16) / 144 / (3 - 1) = 21/144, s = √21/12; stderr = s/√3 = √7/12
    assert report.stderr == pytest.approx(math.sqrt(7) / 12)
    # cons@4: only p1's vote is right
    assert report.cons.value == pytest.approx(1 / 3)
    assert list(report.pass_at) == [1, 2, 4]
    # pass@1 = avg@4
    assert report.pass_at[1].value == pytest.approx(1 / 3)
    # pass@2: p1 1 - C(1,2)/C(4,2) = 1; p2 1 - C(3,2)/C(4,2) = 1 - 3/6 = 1/2; p3 0 → mean 1/2
    assert report.pass_at[2].value == pytest.approx(0.5)
    assert report.pass_at[2].percent == 50
    # pass@4: p1 and p2 have a correct sample, p3 none → 2/3 (67 %)
    assert report.pass_at[4].value == pytest.approx(2 / 3)
    assert report.pass_at[4].percent == 67
    assert [(p.problem_id, p.correct, p.accuracy) for p in report.per_problem] == [
        ("p1", 3, 0.75),
        ("p2", 1, 0.25),
        ("p3", 0, 0.0),
    ]
    assert [p.vote.answer for p in report.per_problem] == ["5", "8", None]


def test_accuracy_report_json():
    data = json.loads(json.dumps(accuracy_report(PROBLEMS).to_json()))
    assert data["avg@4"]["percent"] == 33
    assert data["cons@4"]["percent"] == 33
    assert data["pass@k"]["4"]["percent"] == 67
    assert data["avg@4_stderr"] == pytest.approx(math.sqrt(7) / 12)
    assert data["per_problem"][1]["majority_answer"] == "8"


def test_one_problem_has_no_standard_error():
    report = accuracy_report({"only": verdicts(("1", R), ("2", W))})
    assert report.stderr is None
    assert report.avg.value == 0.5


def test_chosen_ks():
    report = accuracy_report(PROBLEMS, ks=[3])
    # p1: 1 - C(1,3)/C(4,3) = 1; p2: 1 - C(3,3)/C(4,3) = 1 - 1/4 = 3/4; p3: 0 → (1 + 3/4) / 3 = 7/12
    assert report.pass_at[3].value == pytest.approx(7 / 12)


def test_majority_beats_a_smaller_tie():
    vote = majority_vote(verdicts(("1", W), ("2", W), ("3", R), ("3", R)))
    assert (vote.answer, vote.votes, vote.tied, vote.correct) == ("3", 2, ("3",), True)


def test_a_tie_is_correct_only_if_every_tied_answer_is_correct():
    # 2 votes each for a right and a wrong answer: incorrect, whichever came first.
    assert majority_vote(verdicts(("7", R), ("7", R), ("8", W), ("8", W))).correct is False
    assert majority_vote(verdicts(("8", W), ("8", W), ("7", R), ("7", R))).correct is False
    # Two spellings of one right answer (math-verify judges both correct): correct.
    tie = majority_vote(verdicts(("1/2", R), ("0.5", R)))
    assert tie.correct is True
    assert tie.tied == ("1/2", "0.5") and tie.answer == "1/2"  # the first given is reported
    # Both wrong: incorrect.
    assert majority_vote(verdicts(("1", W), ("2", W))).correct is False


def test_answerless_samples_do_not_vote():
    # Three samples without an answer would outvote "4" if None voted.
    vote = majority_vote(verdicts((None, W), (None, W), (None, W), ("4", R)))
    assert (vote.answer, vote.votes, vote.correct) == ("4", 1, True)
    assert majority_vote(verdicts((None, W), (None, W))) == majority_vote([])
    assert majority_vote([]).correct is False and majority_vote([]).answer is None


def test_an_answer_with_a_wrong_sample_is_not_correct():
    # A grader whose verdict is not a function of the answer alone (timeouts): any wrong sample
    # of the winning answer makes it wrong.
    assert majority_vote(verdicts(("3", R), ("3", W), ("4", R))).correct is False


def test_equivalent_answers_vote_together_when_classes_are_given():
    # The case: 5 × 3/4 and 4 × 0.75 (one class, right) against 6 × 1/4 (wrong).
    given = verdicts(*[("3/4", R)] * 5, *[("0.75", R)] * 4, *[("1/4", W)] * 6)
    assert majority_vote(given).correct is False  # by string: "1/4" wins 6 to 5
    vote = majority_vote(given, [0] * 9 + [1] * 6)
    assert (vote.answer, vote.votes, vote.tied, vote.correct) == ("3/4", 9, ("3/4",), True)
    report = accuracy_report({"p": given}, classes={"p": [0] * 9 + [1] * 6})
    assert (report.avg.value, report.cons.value) == (pytest.approx(0.6), 1.0)
    # A sample without an answer never votes, whatever class it is given; None classes do not vote.
    assert majority_vote(verdicts(("1/4", W), (None, W), ("1/2", R)), [0, 1, None]).answer == "1/4"
    # No classes for a problem: by string, as before.
    assert accuracy_report({"p": given}, classes={"p": None}).cons.value == 0.0
    with pytest.raises(UsageError, match="2 classes for 3 verdicts"):
        majority_vote(verdicts(("1", R), ("1", R), ("1", R)), [0, 0])


def test_pass_at_k_matches_the_binomial_formula():
    for n in range(1, 41):
        for c in range(n + 1):
            for k in sorted({*default_ks(n), 3, n - 1} - {0}):
                if k > n:
                    continue
                expected = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not need it.
    value = pass_at_k(1000, 3, 500)
    # 1 - C(997, 500)/C(1000, 500) = 1 - (500·499·498)/(1000·999·998)
    assert value == pytest.approx(1 - (500 * 499 * 498) / (1000 * 999 * 998), rel=1e-12)
    assert pass_at_k(32, 1, 1) == pytest.approx(1 / 32)
    assert pass_at_k(32, 0, 32) == 0.0
    assert pass_at_k(32, 1, 32) == 1.0


def test_default_ks():
    assert default_ks(32) == (1, 2, 4, 8, 16, 32)
    assert default_ks(20) == (1, 2, 4, 8, 16, 20)
    assert default_ks(1) == (1,)


@pytest.mark.parametrize(
    ("n", "c", "k", "words"),
    [(4, 1, 5, "k=5"), (4, 1, 0, "k=0"), (4, 5, 1, "c=5"), (4, -1, 1, "c=-1"), (0, 0, 1, "n=0")],
)
def test_pass_at_k_rejects_bad_input(n, c, k, words):
    with pytest.raises(UsageError, match=words) as caught:
        pass_at_k(n, c, k)
    assert caught.value.exit_code == EXIT_USAGE


def test_problems_with_a_different_n_are_named():
    problems = {**PROBLEMS, "short": verdicts(("1", R)), "empty": []}
    with pytest.raises(ConfigError) as caught:
        accuracy_report(problems)
    assert caught.value.exit_code == EXIT_USAGE
    assert caught.value.problems == [
        "problem 'empty': no samples",
        "problem 'short': 1 samples, but most problems have n=4; avg@n needs the same n for every problem",
    ]


def test_no_problems_and_k_above_n_are_usage_errors():
    with pytest.raises(UsageError, match="no problems"):
        accuracy_report({})
    with pytest.raises(UsageError, match="k=8: must lie in 1…n=4"):
        accuracy_report(PROBLEMS, ks=[1, 8])
    with pytest.raises(ConfigError, match="no samples"):
        accuracy_report({"a": [], "b": []})


def test_whole_percent_rounds_halves_up():
    assert whole_percent(0.565) == 57  # 0.565 * 100 is 56.4999… in binary
    assert whole_percent(0.5625) == 56
    assert whole_percent(0.555) == 56
    assert whole_percent(0.0) == 0 and whole_percent(1.0) == 100
    assert whole_percent(49 / 96) == 51  # 51.04 %
    assert Rate(0.125).to_json() == {"value": 0.125, "percent": 13}


def test_length_report_by_hand():
    report = length_report(
        [100, 200, 300, 400, 1000],
        ["stop", "stop", "length", "stop", "length"],
        [R, W, R, W, W],
    )
    assert report.samples == 5
    assert report.mean == 400  # 2000 / 5
    assert report.median == 300
    # rank (5 - 1) · 0.9 = 3.6: 400 + 0.6 · (1000 - 400) = 760
    assert report.p90 == pytest.approx(760)
    assert report.max == 1000
    assert report.truncated.value == 0.4 and report.truncated.percent == 40
    assert report.mean_correct == 200  # (100 + 300) / 2
    assert report.mean_incorrect == pytest.approx(1600 / 3)  # (200 + 400 + 1000) / 3
    assert json.loads(json.dumps(report.to_json()))["truncated"]["percent"] == 40


def test_length_report_without_correct_samples():
    report = length_report([7], [None], [W])
    assert (report.median, report.p90, report.mean_correct, report.mean_incorrect) == (7, 7, None, 7)
    assert report.truncated.value == 0


def test_percentile_matches_statistics_inclusive_quantiles():
    rng = random.Random(0)
    for size in (2, 3, 10, 33):
        values = [rng.randint(0, 20000) for _ in range(size)]
        assert percentile(values, 90) == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[8])
        assert percentile(values, 50) == pytest.approx(statistics.median(values))


def test_length_report_rejects_bad_input():
    with pytest.raises(UsageError, match="2 token counts, 1 finish reasons and 2 verdicts"):
        length_report([1, 2], ["stop"], [R, W])
    with pytest.raises(UsageError, match="no samples"):
        length_report([], [], [])
    with pytest.raises(UsageError, match="token count -1"):
        length_report([-1], ["stop"], [R])
