"""The ``dapo`` grader: the training reward's rule, verl 0.9.1's ``verl/utils/reward_score/math_dapo.py``
(``compute_score``), reimplemented so that an eval box without verl grades the same way; a test runs
verl's own function on the same cases."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from fipo_cli.eval.graders.verdict import Verdict, integer_verdict

# --- dapo: verl's math_dapo, reimplemented ------------------------------------------------------
# The tables and the order of every step are verl 0.9.1's (itself adapted from EleutherAI's
# lm-evaluation-harness, hendrycks_math/utils.py); change nothing here without changing the
# equivalence test's expectations.

_SUBSTITUTIONS = (
    ("an ", ""),
    ("a ", ""),
    (".$", "$"),
    ("\\$", ""),
    (r"\ ", ""),
    (" ", ""),
    ("mbox", "text"),
    (",\\text{and}", ","),
    ("\\text{and}", ","),
    ("\\text{m}", "\\text{}"),
)
_REMOVED_EXPRESSIONS = (
    "square", "ways", "integers", "dollars", "mph", "inches", "hours", "km", "units", "\\ldots", "sue",
    "points", "feet", "minutes", "digits", "cents", "degrees", "cm", "gm", "pounds", "meters", "meals",
    "edges", "students", "childrentickets", "multiples", "\\text{s}", "\\text{.}", "\\text{\ns}",
    "\\text{}^2", "\\text{}^3", "\\text{\n}", "\\text{}", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"\;",
    r",\!", "{,}", '"', "\\dots",
)  # fmt: skip
ANSWER_LINE = re.compile(r"(?i)Answer\s*:\s*([^\n]+)")
_INVALID = "[INVALID]"  # verl's "no answer" prediction; it takes part in its comparisons
_RESPONSE_WINDOW = 300  # compute_score keeps only the response's last 300 characters …
_BOX_WINDOW = 100  # … and its \boxed{} fallback only the last 100 of those


def normalize_final_answer(final_answer: str) -> str:
    """verl's Minerva normalisation of a final answer (units, ``\\text{}``, ``$``, shorthand TeX)."""
    final_answer = final_answer.split("=")[-1]
    for before, after in _SUBSTITUTIONS:
        final_answer = final_answer.replace(before, after)
    for expression in _REMOVED_EXPRESSIONS:
        final_answer = final_answer.replace(expression, "")
    final_answer = re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", final_answer)
    final_answer = re.sub(r"(\\text\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\textbf\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\overline\{)(.*?)(\})", "\\2", final_answer)
    final_answer = re.sub(r"(\\boxed\{)(.*)(\})", "\\2", final_answer)
    # Shorthand TeX: \fracab -> \frac{a}{b}, \sqrta -> \sqrt{a}.
    final_answer = re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", final_answer)
    final_answer = re.sub(r"(sqrt)([^{])", "sqrt{\\2}", final_answer)
    final_answer = final_answer.replace("$", "")
    if final_answer.replace(",", "").isdigit():
        final_answer = final_answer.replace(",", "")
    return final_answer.strip()


def _last_boxed(text: str) -> str | None:
    """The content of the last complete ``\\boxed{…}`` in ``text`` (braces balanced), else None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[start + len("\\boxed{") : index]
    return None


def dapo_score(response: str, answer: str) -> tuple[bool, str]:
    """verl's ``math_dapo.compute_score`` as ``(correct, prediction)``; ``"[INVALID]"`` when none."""
    window = response[-_RESPONSE_WINDOW:]
    matches = ANSWER_LINE.findall(window)
    prediction = normalize_final_answer(matches[-1] if matches else _INVALID)
    correct = prediction == normalize_final_answer(answer)
    if prediction != _INVALID:
        return correct, prediction
    boxed = _last_boxed(window[-_BOX_WINDOW:])
    if boxed is not None:
        return boxed == answer, boxed
    return correct, prediction


@dataclass(frozen=True)
class DapoGrader:
    """The training reward's verdict (see :func:`dapo_score`), ``extracted=None`` for no answer."""

    integer_answers: bool = False
    name: ClassVar[str] = "dapo"

    def warm_up(self) -> None:
        """Nothing to import: the rule is regular expressions."""

    def grade(self, response: str, answer: str) -> Verdict:
        correct, prediction = dapo_score(response, answer)
        if prediction == _INVALID:
            return Verdict(None, correct)
        if self.integer_answers:
            return integer_verdict(prediction, normalize_final_answer(answer), correct)
        return Verdict(prediction, correct)
