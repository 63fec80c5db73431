"""What every generation engine takes and returns, and the per-sample seed they share.

An engine turns :class:`Request` s (one request = one sample of one prompt) into
:class:`Generation` s. Engines differ in where the model runs (transformers in-process, vLLM
in-process, an OpenAI-compatible server) but agree on three rules, so that their outputs are
interchangeable and an interrupted evaluation can be resumed sample by sample:

- each sample's randomness depends only on ``(settings.seed, prompt_id, sample_index)``
  (:func:`sample_seed`), never on which other requests share its batch or on the run;
- the prompt text is the tokenizer's chat template (with the generation prompt) when the engine
  uses one, otherwise the message contents joined by blank lines (:func:`render_prompt`);
- only the given sampling settings apply: no repetition penalty, top-k or other defaults that a
  model's ``generation_config.json`` may carry (for the openai engine this is up to the server:
  ``vllm serve --generation-config vllm``).

This module imports nothing heavy: the CLI imports it to type its calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

FinishReason = Literal["stop", "length"]

# Seeds are drawn from [0, 2**31): every backend accepts a 32-bit signed int (vLLM and SGLang
# take int64, but some OpenAI-compatible servers reject larger values).
SEED_BITS = 31


@dataclass(frozen=True)
class Message:
    """One chat turn: ``role`` is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class SamplingSettings:
    """How to sample. ``temperature == 0`` is greedy decoding; ``seed`` is the base seed."""

    temperature: float
    top_p: float
    max_tokens: int
    seed: int


@dataclass(frozen=True)
class Request:
    """One sample to draw: sample ``sample_index`` (0-based) of prompt ``prompt_id``."""

    prompt_id: str
    sample_index: int
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class Generation:
    """One finished sample.

    ``prompt`` is the text the model was given (after the chat template when one applied);
    ``text`` the completion without the end-of-sequence token; ``token_count`` the number of
    completion tokens, the end-of-sequence token included when the model produced one (as vLLM
    and the OpenAI ``usage.completion_tokens`` count); ``finish_reason`` "stop" when the model
    ended the sample itself, "length" when ``max_tokens`` cut it off.
    """

    prompt_id: str
    sample_index: int
    prompt: str
    text: str
    token_count: int
    finish_reason: FinishReason


class Engine(Protocol):
    """A loaded model that samples completions. ``close`` frees it; the engine is unusable after."""

    name: str

    def generate(self, requests: Sequence[Request], settings: SamplingSettings) -> Iterator[Generation]:
        """Yield one :class:`Generation` per request as they finish, in any order."""
        ...

    def close(self) -> None: ...


def sample_seed(base_seed: int, prompt_id: str, sample_index: int) -> int:
    """The seed of one sample, in ``[0, 2**31)``: a stable hash of its identity.

    sha256 rather than ``hash()``: Python salts string hashes per process, and the seed must be
    the same in every process so that a resumed run draws exactly the samples it would have
    drawn uninterrupted.
    """
    key = f"{base_seed}\x00{prompt_id}\x00{sample_index}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> (64 - SEED_BITS)


def plain_prompt(messages: Sequence[Message]) -> str:
    """The prompt without a chat template: the message contents joined by blank lines."""
    return "\n\n".join(message.content for message in messages)


def uses_chat_template(tokenizer: Any, use_chat_template: bool) -> bool:
    """Whether prompts for ``tokenizer`` (a Hugging Face tokenizer) go through its chat template."""
    return use_chat_template and bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: Any, messages: Sequence[Message], templated: bool) -> str:
    """The prompt text for ``messages``: the chat template with the generation prompt when
    ``templated`` (see :func:`uses_chat_template`), else :func:`plain_prompt`.

    Callers tokenize a templated prompt without adding special tokens: templates write their own.
    """
    if not templated:
        return plain_prompt(messages)
    conversation = [{"role": message.role, "content": message.content} for message in messages]
    return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
