"""`fipo data prepare`'s library: verl-shaped parquet files, written for real and read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fipo_cli.core.errors import EXIT_USAGE, ConfigError, UsageError
from fipo_cli.data import prepare as data_prepare
from fipo_cli.data.bundled import BENCHMARKS, load_bundled
from fipo_cli.data.prepare import Outcome, output_path, prepare
from fipo_cli.data.prompts import dapo_prompt

from fipo_run import run_fipo


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def test_output_paths_are_predictable():
    assert output_path("data", data_prepare.DEFAULT_TRAIN) == Path("data/dapo-math-17k.parquet")
    assert output_path("data", "aime24") == Path("data/aime24.parquet")
    assert output_path("out", "some/dir/My_Train Set.jsonl") == Path("out/my-train-set.parquet")
    assert output_path("out", Path("aime25")) == Path("out/aime25.parquet")  # a Path is always a file


def test_bundled_validation_sets_prepare_offline_in_verl_shape(tmp_path):
    out = tmp_path / "out"
    report = prepare(out, train=None)

    assert [(f.name, f.role, f.rows_read, f.duplicates_removed, f.rows_written, f.outcome) for f in report.files] == [
        ("aime24", "validation", 30, 0, 30, Outcome.WRITTEN),
        ("aime25", "validation", 30, 0, 30, Outcome.WRITTEN),
    ]
    assert report.validation_files == (out / "aime24.parquet", out / "aime25.parquet")
    assert report.train_files == ()
    assert sorted(p.name for p in out.iterdir()) == ["aime24.parquet", "aime25.parquet"]  # no temporary file left
    for name in ("aime24", "aime25"):
        problems = load_bundled(name)
        rows = read_rows(out / f"{name}.parquet")
        assert [row["prompt"] for row in rows] == [
            [{"role": "user", "content": dapo_prompt(p["problem"])}] for p in problems
        ]
        assert [row["reward_model"] for row in rows] == [
            {"style": "rule", "ground_truth": p["answer"]} for p in problems
        ]
        assert [row["extra_info"] for row in rows] == [{"index": i, "split": "test"} for i in range(30)]
        assert {row["data_source"] for row in rows} == {name}
        assert {row["ability"] for row in rows} == {"MATH"}


def test_every_file_has_the_one_schema_verl_concatenates(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"problem": "1+1?", "answer": 2}])
    prepare(tmp_path / "out", train=train, validation=BENCHMARKS)
    schemas = {pq.read_schema(path) for path in (tmp_path / "out").iterdir()}
    assert len(schemas) == 1
    (schema,) = schemas
    assert schema.field("prompt").type == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    assert schema.field("reward_model").type.field("ground_truth").type == pa.string()


@pytest.mark.verl
@pytest.mark.parametrize("name", ["train", *BENCHMARKS])
def test_verl_scores_prepared_rows_with_the_dapo_answer_verifier(tmp_path, name):
    from verl.utils.reward_score import default_compute_score

    train = write_jsonl(tmp_path / "train.jsonl", [{"problem": "Twice 102?", "answer": "204"}])
    report = prepare(tmp_path / "out", train=train, validation=BENCHMARKS)
    (prepared,) = [f for f in report.files if f.name == name]
    row = read_rows(prepared.path)[0]
    truth = row["reward_model"]["ground_truth"]

    right = default_compute_score(row["data_source"], f"Let me think.\nAnswer: {truth}", truth, row["extra_info"])
    wrong = default_compute_score(row["data_source"], "Let me think.\nAnswer: 100000", truth, row["extra_info"])
    # math_dapo.compute_score answers a dict with the prediction it read from the "Answer:" line.
    assert right["score"] > 0
    assert wrong["score"] <= 0 and wrong["pred"] == "100000"


@pytest.mark.verl
def test_verl_rlhf_dataset_reads_the_prepared_validation_sets(tmp_path, monkeypatch):
    import datasets
    import verl
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer, Qwen2Tokenizer
    from verl.trainer.ppo.utils import create_rl_dataset

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    report = prepare(tmp_path / "data", train=None)

    tokenizer = Qwen2Tokenizer().train_new_from_iterator([dapo_prompt("What is 1 + 1?")] * 4, vocab_size=300)
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")

    # verl's own data defaults, with the overlong filter on so every prompt goes through the chat template.
    trainer_config = OmegaConf.load(Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml")
    data_config = trainer_config.data
    data_config.max_prompt_length = 100_000
    data_config.filter_overlong_prompts = True
    data_config.cache_dir = str(tmp_path / "verl-cache")

    dataset = create_rl_dataset(
        [str(p) for p in report.validation_files], data_config, tokenizer, processor=None, is_train=False
    )

    assert len(dataset) == 60
    first, last = dataset[0], dataset[59]
    assert first["raw_prompt"] == [{"role": "user", "content": dapo_prompt(load_bundled("aime24")[0]["problem"])}]
    assert (first["data_source"], first["reward_model"]["ground_truth"], first["index"]) == ("aime24", "204", 0)
    assert (last["data_source"], last["reward_model"]["ground_truth"], last["index"]) == (
        "aime25",
        load_bundled("aime25")[29]["answer"],
        29,
    )


def test_local_jsonl_train_set_is_deduplicated_and_counted(tmp_path):
    train = write_jsonl(
        tmp_path / "My_Train.jsonl",
        [
            {"question": "What is 2+2?", "answer": 4},
            {"question": "What is  2+2?\n", "answer": 4},  # the same prompt up to whitespace
            {"question": "What is 3+3?", "answer": "6"},
            {"question": "What is 2+2?", "answer": 4},
            {"question": "What is 5+5?", "answer": None},
            {"question": "What is 3+3?", "answer": "6"},
        ],
    )
    report = prepare(tmp_path / "out", train=train, validation=())

    (prepared,) = report.files
    assert (prepared.name, prepared.role, prepared.path) == ("my-train", "train", tmp_path / "out" / "my-train.parquet")
    assert (prepared.rows_read, prepared.incomplete_removed, prepared.duplicates_removed, prepared.rows_written) == (
        6,
        1,
        3,
        2,
    )
    rows = read_rows(prepared.path)
    assert [row["prompt"][0]["content"] for row in rows] == [dapo_prompt("What is 2+2?"), dapo_prompt("What is 3+3?")]
    assert [row["reward_model"]["ground_truth"] for row in rows] == ["4", "6"]
    assert [row["extra_info"] for row in rows] == [{"index": 0, "split": "train"}, {"index": 1, "split": "train"}]
    assert {row["data_source"] for row in rows} == {"math_dapo"}


def test_a_verl_format_source_like_dapo_math_17k_keeps_its_prompts(tmp_path):
    prompt = [{"content": dapo_prompt("Find $x$."), "role": "user"}]
    source_rows = [
        {
            "data_source": "math_dapo",
            "prompt": prompt,
            "ability": "MATH",
            "reward_model": {"ground_truth": "34", "style": "rule-lighteval/MATH_v2"},
            "extra_info": {"index": f"uuid-{i}"},
        }
        for i in range(3)
    ]
    pq.write_table(pa.Table.from_pylist(source_rows), tmp_path / "dapo-math-17k.parquet")

    report = prepare(tmp_path / "out", train=tmp_path / "dapo-math-17k.parquet", validation=())

    (prepared,) = report.files
    assert (prepared.rows_read, prepared.duplicates_removed, prepared.rows_written) == (3, 2, 1)
    assert read_rows(prepared.path) == [
        {
            "data_source": "math_dapo",
            "prompt": [{"role": "user", "content": dapo_prompt("Find $x$.")}],
            "ability": "MATH",
            "reward_model": {"style": "rule", "ground_truth": "34"},
            "extra_info": {"index": 0, "split": "train"},
        }
    ]


def test_custom_column_names_with_problem_and_answer_keys(tmp_path):
    train = tmp_path / "custom.json"
    train.write_text(json.dumps([{"q": "What is 6*7?", "solution": "6*7 = 42", "final": 42}]), encoding="utf-8")

    report = prepare(tmp_path / "out", train=train, validation=(), problem_key="q", answer_key="final")

    (row,) = read_rows(report.files[0].path)
    assert row["prompt"] == [{"role": "user", "content": dapo_prompt("What is 6*7?")}]
    assert row["reward_model"]["ground_truth"] == "42"


def test_missing_columns_are_config_errors_naming_them(tmp_path):
    train = write_jsonl(tmp_path / "custom.jsonl", [{"q": "What is 6*7?", "solution": "42"}])

    with pytest.raises(ConfigError) as raised:
        prepare(tmp_path / "out", train=train, validation=(), problem_key="question", answer_key="final")
    message = str(raised.value)
    assert "--problem-key 'question'" in message and "--answer-key 'final'" in message
    assert "its columns are: q, solution" in message
    assert raised.value.exit_code == EXIT_USAGE

    with pytest.raises(ConfigError, match=r"(?s)no problem column.*no answer column"):
        prepare(tmp_path / "out", train=train, validation=())
    assert not (tmp_path / "out").exists()


def test_two_sets_with_one_output_name_are_refused(tmp_path):
    with pytest.raises(UsageError, match="same file"):
        prepare(tmp_path / "out", train=None, validation=("aime24", "aime24"))


def test_existing_output_is_an_error_and_nothing_is_touched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "aime24.parquet").write_bytes(b"my own file")
    before = snapshot(out)

    with pytest.raises(UsageError) as raised:
        prepare(out, train=None)

    assert str(out / "aime24.parquet") in str(raised.value)
    assert "--force" in raised.value.hint
    assert raised.value.exit_code == EXIT_USAGE
    assert snapshot(out) == before  # aime24 untouched, and aime25 not written either


def test_force_overwrites(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "aime24.parquet").write_bytes(b"my own file")

    report = prepare(out, train=None, force=True)

    assert [f.outcome for f in report.files] == [Outcome.OVERWRITTEN, Outcome.WRITTEN]
    assert len(read_rows(out / "aime24.parquet")) == 30
    assert sorted(p.name for p in out.iterdir()) == ["aime24.parquet", "aime25.parquet"]


def test_dry_run_writes_nothing_and_reports_what_it_would_write(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [{"problem": "1+1?", "answer": "2"}] * 3)

    report = prepare(tmp_path / "out", train=train, dry_run=True)

    assert not (tmp_path / "out").exists()
    assert report.dry_run
    assert [(f.name, f.rows_written, f.duplicates_removed, f.outcome) for f in report.files] == [
        ("train", 1, 2, Outcome.WOULD_WRITE),
        ("aime24", 30, 0, Outcome.WOULD_WRITE),
        ("aime25", 30, 0, Outcome.WOULD_WRITE),
    ]


def test_importing_the_library_loads_no_data_stack():
    heavy = ("datasets", "pyarrow", "pandas", "torch")
    probe = f"import sys, fipo_cli.data.prepare; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr


def test_cli_writes_the_bundled_sets_and_refuses_to_overwrite(tmp_path):
    first = run_fipo(tmp_path, "data", "prepare", "--no-train", "--json")
    assert first.returncode == 0, first.stderr
    files = json.loads(first.stdout)["files"]
    assert [(f["name"], f["written"], f["outcome"]) for f in files] == [("aime24", 30, "written"), ("aime25", 30, "written")]
    before = (tmp_path / "data" / "aime24.parquet").read_bytes()
    again = run_fipo(tmp_path, "data", "prepare", "--no-train")
    assert again.returncode == 2 and "--force" in again.stderr
    assert (tmp_path / "data" / "aime24.parquet").read_bytes() == before


def test_bad_training_files_exit_2_naming_the_file_and_line(tmp_path):
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(b'{"problem": "1+1", "answer": "2"}\n{"problem": "caf\xe9", "answer": "3"}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"problem": "1+1", "answer": "2"}\n{"problem": \n')
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"problem": "", "answer": "2"}])
    for train, expected in ((latin1, f"{latin1}:2: not UTF-8 text (byte 0xe9"),
                            (broken, f"{broken}:2: not valid JSON"),
                            (empty, "has no row with both a problem and an answer")):
        result = run_fipo(tmp_path, "data", "prepare", "--train", str(train), "--validation", "aime24")
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert expected in result.stderr
    assert not (tmp_path / "data").exists()


def test_an_unwritable_out_directory_is_a_usage_error_and_nothing_is_written(tmp_path):
    (tmp_path / "a-file").write_text("")
    for out in ("/sys/fipo-data", str(tmp_path / "a-file" / "data")):  # /sys refuses even root
        result = run_fipo(tmp_path, "data", "prepare", "--no-train", "--out", out)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"--out {out}: cannot write there" in result.stderr and "nothing was written" in result.stderr
    assert not Path("/sys/fipo-data").exists()


def test_a_failed_write_leaves_no_file_and_no_directory(tmp_path, monkeypatch):
    calls = []

    def write_then_fail(path, records):  # the second file's disk fills up
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        pq.write_table(pa.Table.from_pylist(list(records), schema=data_prepare._schema()), path)

    monkeypatch.setattr(data_prepare, "write_parquet", write_then_fail)
    with pytest.raises(UsageError, match="No space left on device"):
        prepare(tmp_path / "new" / "out", train=None, validation=("aime24", "aime25"))
    assert len(calls) == 2 and not (tmp_path / "new").exists()


def test_train_with_no_train_is_refused_not_ignored(tmp_path):
    result = run_fipo(tmp_path, "data", "prepare", "--train", "mine.jsonl", "--no-train")
    assert result.returncode == 2 and "--train mine.jsonl and --no-train contradict each other" in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_training_file_of_another_name_says_what_the_recipes_read(tmp_path):
    write_jsonl(tmp_path / "mytrain.jsonl", [{"problem": "1+1", "answer": "2"}])
    result = run_fipo(tmp_path, "data", "prepare", "--train", "mytrain.jsonl", "--validation", "aime24")
    assert result.returncode == 0, result.stderr
    assert "data/mytrain.parquet" in result.stdout
    assert ("note: the recipes train on data/dapo-math-17k.parquet, not data/mytrain.parquet: set "
            "data.train_files: [data/mytrain.parquet] in fipo.yaml, or train with "
            "data.train_files=[data/mytrain.parquet]") in " ".join(result.stdout.split())
    quiet = run_fipo(tmp_path, "data", "prepare", "--no-train", "--validation", "aime25", "--json")
    assert json.loads(quiet.stdout)["note"] is None
