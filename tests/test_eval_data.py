"""Evaluation inputs and the samples file: problem sets, prompt formats, crash-safe appends."""

from __future__ import annotations

import json

import pytest

from fipo_cli.core.errors import ConfigError, FipoError, UsageError
from fipo_cli.data.prompts import PROMPT_FORMATS
from fipo_cli.eval.problems import load_benchmark
from fipo_cli.eval.samples import Sample, SampleWriter, read_samples, write_samples


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


def test_prompt_formats():
    assert PROMPT_FORMATS["dapo"]("P").endswith('Remember to put your answer on its own line after "Answer:".')
    assert PROMPT_FORMATS["boxed"]("P") == "P\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    assert PROMPT_FORMATS["raw"]("P") == "P"


def test_a_line_cut_by_a_kill_is_dropped_and_appending_goes_on(tmp_path):
    path = tmp_path / "samples.jsonl"
    with SampleWriter(path) as writer:
        writer.append(Sample("p1", 0, "Answer: 1", answer="1", token_count=3, finish_reason="stop"))
        writer.append(Sample("p1", 1, "Answer: 2", answer="1", token_count=3, finish_reason="stop"))
    with path.open("a") as handle:
        handle.write('{"prompt_id": "p1", "sample_index": 2, "resp')  # killed mid-write
    with pytest.raises(FipoError):
        read_samples(path)
    assert [s.key for s in read_samples(path, repair=True)] == [("p1", 0), ("p1", 1)]
    with SampleWriter(path) as writer:
        writer.append(Sample("p1", 2, "Answer: 3"))
    assert [s.key for s in read_samples(path)] == [("p1", 0), ("p1", 1), ("p1", 2)]


def test_rewrite_with_verdicts_and_required_fields(tmp_path):
    path = tmp_path / "samples.jsonl"
    write_samples(path, [Sample("7", 0, "x", verdicts={"dapo": {"extracted": None, "correct": False, "error": None}})])
    (sample,) = read_samples(path)
    assert sample.verdicts["dapo"]["correct"] is False
    path.write_text(json.dumps({"prompt_id": "7", "response": "x"}) + "\n")
    with pytest.raises(FipoError) as caught:
        read_samples(path)
    assert "lacks sample_index" in str(caught.value)
