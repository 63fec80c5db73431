"""The length lab's task (`builtin:binary-numbers`): answers an independent conversion confirms, verl's
columns, one validation data source per number of bits, and the reward on hand-written responses."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from fipo_cli.assets import binary_numbers as task
from fipo_cli.assets import builtin as local_assets


def read(prompt: str) -> str:
    """The binary number a prompt spells, from its text alone: ``a1b0c1d1`` → ``1011``."""
    assert re.fullmatch(r"(?:[a-z][01])+", prompt), prompt
    places, bits = prompt[0::2], prompt[1::2]
    assert places == "abcdefghijklmnopqrstuvwxyz"[: len(places)]
    return bits


def test_every_answer_is_the_decimal_value_of_the_number_the_prompt_spells():
    found = task.problems(500, seed="t")
    assert set(Counter(len(problem.bits) for problem in found)) == set(task.BITS)
    for problem in found:
        bits = read(problem.prompt)
        assert bits[0] == "1" and problem.answer == str(int(bits, 2))
        prefixes = [str(int(bits[:end], 2)) for end in range(2, len(bits) + 1)]
        steps = "".join(place + value for place, value in zip("bcdefghijklmnopqrstuvwxyz", prefixes, strict=False))
        assert problem.response(stepwise=True) == f"{steps}A{int(bits, 2)}"
        assert problem.response(stepwise=False) == f"A{int(bits, 2)}"
        assert set(problem.prompt + problem.response(stepwise=True)) <= set(task.ALPHABET)
    assert task.Problem((1, 0, 1, 1)).response(stepwise=True) == "b2c5d11A11"  # the docstring's example


def test_problems_are_the_same_for_a_seed_and_lengths_can_be_chosen():
    assert task.problems(5, seed=3) == task.problems(5, seed=3) != task.problems(5, seed=4)
    assert [len(problem.bits) for problem in task.problems(6, seed=0, bits=[2, 7])] == [2, 7, 2, 7, 2, 7]


def test_sft_traces_mix_both_ways_in_the_share_asked():
    examples = task.sft_examples(2000, seed=0, stepwise_share=0.3)
    stepwise = [response for _, response in examples if not response.startswith("A")]
    assert 0.27 < len(stepwise) / len(examples) < 0.33
    for prompt, response in examples:
        assert response.endswith(f"A{int(read(prompt), 2)}")
    assert examples == task.sft_examples(2000, seed=0, stepwise_share=0.3) != task.sft_examples(2000, 1, 0.3)


@pytest.mark.parametrize(
    "response, answer, score",
    [
        ("b2c5d11A11", "11", 1.0),  # the steps, then the right answer
        ("A11", "11", 1.0),  # the answer at once
        ("A12", "11", 0.0),  # a wrong answer
        ("A1", "11", 0.0),  # a prefix of it is wrong too
        ("A111", "11", 0.0),
        ("b2c5d11", "11", 0.0),  # steps without an answer
        ("b3c6d13A11", "11", 1.0),  # only the final answer is scored, not the steps
        ("A11A12", "11", 0.0),  # the last answer counts
        ("A12A11", "11", 1.0),
        ("A11\n", "11", 1.0),  # trailing whitespace is fine
        ("A11b", "11", 0.0),  # anything else after the answer is not
        ("A 11", "11", 0.0),
        ("A011", "11", 0.0),  # the number as written, no leading zero
        ("", "11", 0.0),
    ],
)
def test_the_reward_is_one_for_the_right_final_answer_and_zero_otherwise(response, answer, score):
    # The independent rule: the text after the last "A", whitespace stripped, is exactly the answer.
    expected = 1.0 if "A" in response and response[response.rindex("A") + 1:].rstrip() == answer else 0.0
    assert expected == score
    assert task.compute_score(task.TRAIN_SOURCE, response, answer) == score


def test_the_data_is_built_once_in_verls_columns_with_a_validation_source_per_length(tmp_path, monkeypatch):
    monkeypatch.setenv("FIPO_CACHE_DIR", str(tmp_path / "cache"))
    paths = ["builtin:binary-numbers/train.parquet", "builtin:binary-numbers/validation.parquet"]
    assert local_assets.ensure(paths) == [tmp_path / "cache" / "builtin" / "binary-numbers-v1"]
    assert local_assets.ensure(paths) == []  # cached
    import pyarrow.parquet as pq

    train = pq.read_table(local_assets.resolve(paths[0])).to_pylist()
    validation = pq.read_table(local_assets.resolve(paths[1])).to_pylist()
    assert len(train) == task.TRAIN_PROBLEMS and {row["data_source"] for row in train} == {task.TRAIN_SOURCE}
    assert Counter(row["data_source"] for row in validation) == {
        f"binary_{bits}bit": task.VALIDATION_PROBLEMS_PER_BITS for bits in task.BITS}
    for row in train + validation:
        (message,) = row["prompt"]
        assert message["role"] == "user"
        assert row["reward_model"] == {"style": "rule", "ground_truth": str(int(read(message["content"]), 2))}
    for row in validation:
        assert row["data_source"] == f"binary_{len(read(row['prompt'][0]['content']))}bit"
