"""The length lab's warm start (`builtin:tiny-reasoner`), built with small settings: a Qwen2 that
answers both at once and step by step, the same weights from the same seed, loadable by verl and vLLM
as any Hugging Face model directory."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fipo_cli.assets import binary_numbers, tiny_reasoner

pytest.importorskip("transformers")


def test_the_warm_start_answers_both_at_once_and_step_by_step(small_reasoner):
    problems = binary_numbers.problems(96, seed="test")
    responses = tiny_reasoner.sample(small_reasoner, [problem.prompt for problem in problems])
    direct = [response for response in responses if response.startswith("A")]
    stepwise = [response for response in responses if response.startswith("b")]  # the value of bits a and b
    # Half the traces were each way: both shapes come out, each in a fair share of the samples.
    assert len(direct) >= 0.2 * len(responses) and len(stepwise) >= 0.2 * len(responses), responses
    assert max(map(len, stepwise)) > max(map(len, direct))
    # The tokenizer has one token per character of the task: lengths in tokens are lengths in characters.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(small_reasoner)
    texts = [text for problem in problems for text in (problem.prompt, problem.response(stepwise=True))]
    assert all(len(tokenizer(text, add_special_tokens=False)["input_ids"]) == len(text) for text in texts)


def test_the_build_is_a_model_directory_with_its_record(small_reasoner):
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(small_reasoner)
    assert config.model_type == "qwen2" and config.hidden_size // config.num_attention_heads >= 32  # vLLM's minimum
    tokenizer = AutoTokenizer.from_pretrained(small_reasoner)
    assert tokenizer.eos_token == "<|im_end|>" and config.eos_token_id == tokenizer.eos_token_id
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "a1b0c1"}], add_generation_prompt=True,
                                           tokenize=False)
    assert prompt == "<|im_start|>a1b0c1<|im_end|><|im_start|>"
    record = json.loads((small_reasoner / tiny_reasoner.RECORD_FILE).read_text())
    assert record["examples"] == record["settings"]["steps"] * record["settings"]["batch_size"]
    assert record["loss"]["last"] < record["loss"]["first"]


def test_the_same_seed_gives_the_same_weights_and_another_seed_others(tmp_path):
    import torch
    from safetensors.torch import load_file

    quick = tiny_reasoner.SftSettings(hidden_size=64, layers=1, heads=2, intermediate_size=64, steps=8, batch_size=8)
    weights = [load_file(tiny_reasoner.build_tiny_reasoner(tmp_path / name, settings) / "model.safetensors")
               for name, settings in (("a", quick), ("b", quick), ("c", dataclasses.replace(quick, seed=1)))]
    assert weights[0].keys() == weights[1].keys() == weights[2].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert not all(torch.equal(weights[0][key], weights[2][key]) for key in weights[0])
