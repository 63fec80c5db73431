"""Where graders disagree: one verdict of each grader per sample, compared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fipo_cli.core.errors import UsageError
from fipo_cli.eval.graders.verdict import Verdict

# --- comparing graders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GraderComparison:
    """How graders judged the same samples.

    ``disagreements``: indices of the samples whose correctness differs between graders.
    Per grader: how many samples it judged correct, found no answer in, and failed on.
    """

    graders: tuple[str, ...]
    samples: int
    disagreements: tuple[int, ...]
    correct: Mapping[str, int] = field(default_factory=dict)
    no_answer: Mapping[str, int] = field(default_factory=dict)
    errors: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "graders": list(self.graders),
            "samples": self.samples,
            "disagreements": list(self.disagreements),
            "correct": dict(self.correct),
            "no_answer": dict(self.no_answer),
            "errors": dict(self.errors),
        }


def compare_graders(verdicts: Mapping[str, Sequence[Verdict]]) -> GraderComparison:
    """Compare the verdicts of several graders on the same samples (as :func:`grade_samples` returns)."""
    names = tuple(verdicts)
    lengths = {name: len(verdicts[name]) for name in names}
    if len(set(lengths.values())) > 1:
        raise UsageError(f"compare_graders: the graders judged different numbers of samples: {lengths}")
    samples = next(iter(lengths.values()), 0)
    disagreements = tuple(
        index for index in range(samples) if len({verdicts[name][index].correct for name in names}) > 1
    )
    return GraderComparison(
        graders=names,
        samples=samples,
        disagreements=disagreements,
        correct={name: sum(v.correct for v in verdicts[name]) for name in names},
        no_answer={name: sum(v.extracted is None for v in verdicts[name]) for name in names},
        errors={name: sum(v.error is not None for v in verdicts[name]) for name in names},
    )
