"""samples.jsonl: any Unicode survives a write and a read, bad files are named with their line,
a repeated (problem, sample index) is refused, and one evaluation directory has one writer."""

from __future__ import annotations

import json
import os

import pytest

from fipo_cli.core.errors import EXIT_USAGE, FipoError, UsageError
from fipo_cli.eval.pipeline import writer_lock
from fipo_cli.eval.samples import Sample, SampleWriter, read_samples, write_samples

from fipo_run import run_fipo

# Line breaks to str.splitlines and JavaScript (U+0085, U+2028, U+2029), a lone surrogate (no
# UTF-8 form), and characters that are plain UTF-8.
AWKWARD = "a\u2028b\u2029c\x85d\udc80e\ud83d f é 漢字 🙂 \x0b\x0c\x1c\x1d\x1e\r"


@pytest.mark.parametrize("write", ["atomic", "append"])
def test_any_unicode_survives_and_a_line_is_a_line_for_every_reader(tmp_path, write):
    path = tmp_path / "samples.jsonl"
    samples = [Sample("p", 0, AWKWARD, answer="1"), Sample("p", 1, "plain", answer="1")]
    if write == "atomic":
        write_samples(path, samples)
    else:
        with SampleWriter(path) as writer:
            for sample in samples:
                writer.append(sample)
    assert read_samples(path) == samples
    data = path.read_bytes()
    data.decode("utf-8")  # strict: nothing that is not UTF-8
    text = data.decode("utf-8")
    # Every reader's idea of a line gives the same two records: splitlines (Python, many
    # JSONL readers) and JavaScript's line terminators included.
    assert len(text.splitlines()) == 2
    assert [json.loads(line)["response"] for line in text.splitlines()] == [AWKWARD, "plain"]


def test_a_foreign_file_with_raw_line_separators_is_read_by_newline_only(tmp_path):
    path = tmp_path / "other.jsonl"
    row = json.dumps({"prompt_id": "p", "sample_index": 0, "response": "x\u2028y"}, ensure_ascii=False)
    path.write_text(row + "\n", encoding="utf-8")
    assert [s.response for s in read_samples(path)] == ["x\u2028y"]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"prompt_id": "p", "sample_index": 0, "response": "r"}\n{oops\n', "line 2: not valid JSON"),
        (b'{"prompt_id": "p", "sample_index": 0, "response": "r"}\n[1, 2]\n', "line 2: a JSON list, not an object"),
        (b'{"prompt_id": "p", "response": "r"}\n', "line 1: lacks sample_index"),
        (b'{"prompt_id": "p", "sample_index": "0", "response": "r"}\n', "line 1: sample_index '0'"),
        (b'{"prompt_id": "p", "sample_index": -1, "response": "r"}\n', "line 1: sample_index -1"),
        (b'{"prompt_id": "p", "sample_index": 0, "response": 7}\n', "line 1: response: a JSON int"),
        ((b'{"prompt_id": "p", "sample_index": 0, "response": "r"}\n{"prompt_id": "p", "sample_index": 0, '
          b'"response": "\xe9"}\n'), "bad.jsonl:2: not UTF-8 text (byte 0xe9"),
    ],
)
def test_a_bad_line_is_a_usage_error_naming_file_and_line(tmp_path, content, words):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(UsageError) as caught:
        read_samples(path)
    assert caught.value.exit_code == EXIT_USAGE
    assert str(path) in caught.value.message and words in caught.value.message


def test_a_repeated_sample_is_refused(tmp_path):
    path = tmp_path / "twice.jsonl"
    row = json.dumps({"prompt_id": "2024-I-1", "sample_index": 0, "response": "Answer: 204"})
    path.write_text(f"{row}\n{row}\n")
    with pytest.raises(UsageError, match=r"line 2 repeats sample 0 of problem '2024-I-1' \(first on line 1\)"):
        read_samples(path)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no such file"),
        (b'{"prompt_id": "2024-I-1", "sample_index": 0, "response": "r"}\ngarbage\n', "line 2: not valid JSON"),
        (b'{"prompt_id": "2024-I-1", "sample_index": 0, "response": "\xff"}\n', "in.jsonl:1: not UTF-8 text"),
        (b'{"prompt_id": "2024-I-1", "sample_index": 0, "response": "a"}\n' * 2, "repeats sample 0"),
        (b"", "no samples to score"),
    ],
)
def test_eval_score_refuses_bad_files_with_exit_2_and_no_traceback(tmp_path, content, words):
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_bytes(content)
    result = run_fipo(tmp_path, "eval", "score", str(path), "--bench", "aime24")
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_score_regrades_a_file_with_awkward_unicode(tmp_path):
    path = tmp_path / "odd.jsonl"
    rows = [{"prompt_id": "2024-I-1", "sample_index": 0, "response": AWKWARD + "\nAnswer: 204"}]
    # As another tool might write it: surrogates escaped (they have no UTF-8), the rest raw.
    path.write_text("".join(json.dumps(row, ensure_ascii=False).replace("\udc80", "\\udc80").replace(
        "\ud83d", "\\ud83d") + "\n" for row in rows), encoding="utf-8")
    result = run_fipo(tmp_path, "eval", "score", str(path), "--bench", "aime24", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["graders"]["dapo"]["avg@1"]["value"] == 1.0
    graded = read_samples(tmp_path / "odd.graded.jsonl")
    assert graded[0].response == rows[0]["response"]


def test_eval_score_into_a_directory_being_written_is_refused(tmp_path):
    directory = tmp_path / "eval"
    directory.mkdir()
    (directory / "eval_settings.json").write_text("{}")
    (directory / "samples.jsonl").write_text(
        json.dumps({"prompt_id": "2024-I-1", "sample_index": 0, "response": "Answer: 204"}) + "\n")
    with writer_lock(directory):
        result = run_fipo(tmp_path, "eval", "score", str(directory / "samples.jsonl"), "--bench", "aime24")
    assert result.returncode == 2 and f"process {os.getpid()}" in result.stderr, result.stderr
    assert not (directory / "results.json").exists()


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
