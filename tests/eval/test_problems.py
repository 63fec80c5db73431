"""Problem sets: bundled AIME, local files with named columns, unknown benchmarks."""

from __future__ import annotations

import json

import pytest

from fipo_cli.core.errors import ConfigError, UsageError
from fipo_cli.eval.problems import load_benchmark


def test_bundled_aime_is_thirty_integer_problems():
    bench = load_benchmark("aime24")
    assert (bench.name, len(bench.problems), bench.integer_answers) == ("aime24", 30, True)
    assert bench.problems[0].id == "2024-I-1" and bench.problems[0].answer == "204"
    assert not load_benchmark("math500").integer_answers
    assert len(load_benchmark("aime25", limit=5).problems) == 5


def test_local_file_with_named_columns(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps({"q": f"What is {i}+{i}?", "sol": str(2 * i)}) for i in range(3)) + "\n")
    bench = load_benchmark(str(path), problem_key="q", answer_key="sol")
    assert [(p.id, p.problem, p.answer) for p in bench.problems] == [
        ("0", "What is 0+0?", "0"), ("1", "What is 1+1?", "2"), ("2", "What is 2+2?", "4")
    ]
    with pytest.raises(ConfigError) as caught:
        load_benchmark(str(path), answer_key="answer")
    assert "--answer-key 'answer': no such column; the columns are q, sol" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_benchmark(str(path))
    assert "--problem-key" in str(caught.value)


def test_unknown_benchmark_and_bad_limit():
    with pytest.raises(UsageError):
        load_benchmark("no such benchmark!")
    with pytest.raises(UsageError):
        load_benchmark("aime24", limit=0)
