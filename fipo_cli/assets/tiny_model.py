"""A tiny Qwen2 model and tokenizer built offline: the model of the ``tiny`` recipe, the tests and
the benchmarks (no model hub, no download)."""

from __future__ import annotations

from pathlib import Path

# A Qwen-style template: the tiny model's prompts look like Qwen2.5-Instruct's.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Each step ends the sample with probability ~4 %, so with 16 new tokens about half the
# samples stop and half run out of length: both finish reasons show up within a few samples.
TINY_EOS_PROBABILITY = 0.04


def build_tiny_model(directory: Path) -> Path:
    """A 2-layer Qwen2 causal LM (hidden 64, 2 heads of size 32: vLLM's minimum) with a
    300-token BPE tokenizer and a chat template, saved to a directory; built offline in < 1 s.

    The weights are random except that one hidden dimension is held large and constant, and
    the output layer reads it to allow only ten tokens, the digits 0-9 (near-uniformly), and
    ``<|im_end|>`` with probability ``TINY_EOS_PROBABILITY`` at every step. A completion is thus
    a digit string, and Qwen2's pre-tokenizer splits digits one by one: re-tokenizing a
    completion gives back exactly the tokens the model sampled, which lets tests check counts.
    """
    import math

    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    corpus = [
        "Solve the following math problem step by step. The last line of your response should be of the form",
        "Answer: $Answer (without quotes) where $Answer is the answer to the problem.",
        'What is 1 + 1? Remember to put your answer on its own line after "Answer:". Answer: 2',
        "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 = + - * / ( ) { } $ \\frac",
    ] * 20
    tokenizer = Qwen2Tokenizer().train_new_from_iterator(  # no progress bars: they would cut through a run's view
        corpus, vocab_size=300, new_special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], show_progress=False
    )
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        # Dimension 0 of every embedding is 1 (the others are ~0.02): after the final RMSNorm
        # it is ~sqrt(hidden) at every position, whatever the layers add.
        model.model.embed_tokens.weight[:, 0] = 1.0
        scale = math.sqrt(config.hidden_size)
        digits = tokenizer.convert_tokens_to_ids(list("0123456789"))
        model.lm_head.weight[:, 0] = -40.0 / scale  # logit ≈ -40: never sampled
        model.lm_head.weight[digits, 0] = 0.0
        eos_logit = math.log(TINY_EOS_PROBABILITY / (1 - TINY_EOS_PROBABILITY) * len(digits))
        model.lm_head.weight[eos_id, 0] = eos_logit / scale
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=tokenizer.pad_token_id)

    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
