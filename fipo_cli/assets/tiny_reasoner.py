"""The ``tiny-reasoner`` model: a small Qwen2 that fipo warm-starts on CPU, so that RL has a length to select.

RL from random weights cannot discover a chain of thought, so :func:`build_tiny_reasoner` first
teaches a freshly initialised Qwen2 both ways of answering the binary-numbers task
(:mod:`fipo_cli.assets.binary_numbers`) by supervised fine-tuning: half of its traces answer at
once, half write the value of every longer prefix first. The policy it leaves samples both; the
stepwise way is right far more often on long numbers, and RL (``--model tiny-reasoner``) has
that length to select.

The trainer is transformers' ``Trainer``: it is already in every fipo install (verl and vLLM need
transformers), runs on CPU without a process group, and seeds model, data order and dropout from
one ``seed``. TRL's ``SFTTrainer`` would add a package for what a 20-line collator does here
(the loss on the response only); verl's SFT trainer needs torchrun and FSDP for a model of half
a million parameters.

The tokenizer is Qwen2's byte-level BPE with no merges: one token per character, so a response's
length in tokens is its length in characters, and what the model writes reads as it is.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fipo_cli.assets import binary_numbers

#: Qwen-style turns without role names, which would cost 10 tokens a prompt on a character vocabulary.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['content'] }}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
#: The whole byte alphabet and the three special tokens: no merges, one token per character.
VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)
#: What the build writes next to the model: its settings, loss and time.
RECORD_FILE = "fipo_sft.json"
IGNORE_INDEX = -100


@dataclass(frozen=True)
class SftSettings:
    """The model's size and the warm start's recipe (the defaults build ``builtin:tiny-reasoner``)."""

    hidden_size: int = 128
    layers: int = 4
    heads: int = 4  # head size hidden_size / heads = 32: vLLM's smallest
    intermediate_size: int = 256
    steps: int = 500
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01
    stepwise_share: float = 0.5
    """The share of traces that write the steps; the rest answer at once."""
    seed: int = 0


#: A warm start of seconds for tests: too small to be right often, enough to learn both shapes of answer.
SMALL = SftSettings(hidden_size=64, layers=2, heads=2, intermediate_size=128, steps=150, batch_size=32,
                    learning_rate=5e-3, warmup_steps=10)


def build_tokenizer() -> Any:
    """Qwen2's tokenizer class with a character vocabulary, the chat template and ``<|im_end|>`` as EOS."""
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer().train_new_from_iterator(
        [binary_numbers.ALPHABET], vocab_size=VOCAB_SIZE, new_special_tokens=SPECIAL_TOKENS
    )
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tokenized_examples(tokenizer: Any, count: int, seed: int, stepwise_share: float) -> list[dict[str, list[int]]]:
    """``count`` SFT examples: the chat prompt and the response with EOS, the loss on the response only."""
    examples = binary_numbers.sft_examples(count, seed=seed, stepwise_share=stepwise_share)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=False) for prompt, _ in examples]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer([response for _, response in examples], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [
        {"input_ids": [*prompt, *response, eos], "labels": [IGNORE_INDEX] * len(prompt) + [*response, eos]}
        for prompt, response in zip(prompt_ids, response_ids, strict=True)
    ]


def pad_batch(features: Sequence[dict[str, list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (IGNORE_INDEX where padded)."""
    import torch

    width = max(len(feature["input_ids"]) for feature in features)
    batch: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
    for feature in features:
        padding = width - len(feature["input_ids"])
        batch["input_ids"].append(feature["input_ids"] + [pad_id] * padding)
        batch["attention_mask"].append([1] * len(feature["input_ids"]) + [0] * padding)
        batch["labels"].append(feature["labels"] + [IGNORE_INDEX] * padding)
    return {key: torch.tensor(value) for key, value in batch.items()}


def build_tiny_reasoner(directory: Path, settings: SftSettings = SftSettings()) -> Path:
    """Build the model and tokenizer into ``directory``: a Qwen2 initialised from ``settings.seed`` and
    trained for ``settings.steps`` steps of ``settings.batch_size`` fresh traces (no trace repeats).

    It trains on one thread: a model this small gains little from a second one, and two threads
    on a busy 2-core machine wait on each other at every operation (measured on this project's
    machine at load 5: 3.3 s a step on two threads, 0.26 s on one). One thread also makes the
    weights the same for the same settings on any machine with the same torch. Writes the model,
    the tokenizer, the generation config and :data:`RECORD_FILE` (``benchmarks/bench_tiny_reasoner.py``
    measures the time).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build(directory, settings)
    finally:
        torch.set_num_threads(threads)


def _build(directory: Path, settings: SftSettings) -> Path:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Trainer, TrainingArguments, set_seed

    started = time.monotonic()
    tokenizer = build_tokenizer()
    examples = tokenized_examples(tokenizer, settings.steps * settings.batch_size, settings.seed,
                                  settings.stepwise_share)
    set_seed(settings.seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads,
        num_key_value_heads=settings.heads,
        max_position_embeddings=256,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config)
    with tempfile.TemporaryDirectory(prefix="fipo-sft-") as scratch:
        arguments = TrainingArguments(
            output_dir=scratch,
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="cosine",
            warmup_steps=settings.warmup_steps,
            weight_decay=settings.weight_decay,
            adam_beta2=0.98,
            max_grad_norm=1.0,
            optim="adamw_torch",
            seed=settings.seed,
            data_seed=settings.seed,
            use_cpu=True,
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, settings.steps // 10),
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=arguments, train_dataset=examples,
                          data_collator=lambda features: pad_batch(features, tokenizer.pad_token_id))
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    model = trainer.model.eval()
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    record = {
        "settings": asdict(settings),
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "examples": len(examples),
        "loss": {"first": losses[0] if losses else None, "last": losses[-1] if losses else None},
        "seconds": round(time.monotonic() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
    (directory / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return directory


def sample(directory: Path, prompts: Sequence[str], *, seed: int = 0, max_new_tokens: int = 96) -> list[str]:
    """One response per prompt from the model in ``directory``, sampled at temperature 1 (as the rollout
    samples), decoded without special tokens."""
    import torch
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.padding_side = "left"
    model = Qwen2ForCausalLM.from_pretrained(directory).eval()
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                           tokenize=False) for prompt in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            output = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                    max_new_tokens=max_new_tokens)
    finally:
        torch.random.set_rng_state(generator_state)
    return tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

