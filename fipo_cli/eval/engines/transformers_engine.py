"""The transformers engine: batched ``model.generate`` in this process, on a GPU or the CPU.

For small models, machines without vLLM, and CI. Batch independence: requests are batched
with left padding, and sampling does not use torch's global generator; a logits processor draws
each row's token with that row's own generator, seeded by :func:`sample_seed`. So a sample's
text depends on its seed and its prompt only, whatever else shares its batch (up to the
floating-point noise that padding adds to the logits, which flips a draw only when it lands
within that noise of a boundary between two tokens).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.utils import logging as transformers_logging

from fipo_cli.core.errors import UsageError
from fipo_cli.eval.engines.base import (
    Generation,
    Request,
    SamplingSettings,
    render_prompt,
    sample_seed,
    uses_chat_template,
)

DTYPES = ("auto", "bfloat16", "float16", "float32")


class _PerRowSampler(LogitsProcessor):
    """Samples each row's next token with its own generator and forces it.

    Returns scores that are 0 at the drawn token and -inf elsewhere, so that greedy decoding
    (``do_sample=False``) picks exactly the drawn token. Temperature and top-p are applied here,
    not by transformers' warpers, because those would sample with the global generator.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        # CPU generators draw the same numbers whatever device the model is on.
        self._generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self._temperature = temperature
        self._top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """``scores``: (batch, vocab) logits of the next token; returns the forcing mask, same shape."""
        probs = torch.softmax(scores.float() / self._temperature, dim=-1)
        if self._top_p < 1:
            # Keep the smallest set of most likely tokens whose mass reaches top_p: a token stays
            # while the mass before it (in descending order) is below top_p.
            sorted_probs, sorted_ids = probs.sort(dim=-1, descending=True)
            dropped = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= self._top_p
            probs = probs.masked_fill(dropped.scatter(-1, sorted_ids, dropped), 0.0)
        # Inverse-CDF sampling with one uniform per row from that row's generator. The CDF runs
        # in token-id order, not sorted order: near-tied tokens would swap places under padding
        # noise, and a swap moves whole intervals, whereas noise in id order only nudges edges.
        cdf = probs.cumsum(dim=-1)
        uniforms = torch.stack([torch.rand((), generator=g) for g in self._generators]).to(scores.device)
        tokens = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True)
        tokens = tokens.clamp(max=cdf.shape[-1] - 1)
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter_(-1, tokens, 0.0)


class TransformersEngine:
    """``model``: a local directory or hub id of a causal LM; ``batch_size``: requests per ``generate`` call."""

    name = "transformers"

    def __init__(self, model: str, *, use_chat_template: bool = True, dtype: str = "auto", batch_size: int = 8) -> None:
        if dtype not in DTYPES:
            raise UsageError(f"dtype {dtype!r}: the transformers engine takes one of {', '.join(DTYPES)}")
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        # transformers' "Loading weights" bar would land between fipo's own progress bars.
        transformers_logging.disable_progress_bar()
        self._tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        self._model = AutoModelForCausalLM.from_pretrained(
            model, dtype=dtype if dtype == "auto" else getattr(torch, dtype)
        ).to(self._device)
        self._model.eval()
        self._templated = uses_chat_template(self._tokenizer, use_chat_template)
        self._batch_size = batch_size
        # Stop at the model's end-of-sequence tokens and the tokenizer's, as vLLM does.
        eos = self._model.generation_config.eos_token_id
        eos_ids = {eos} if isinstance(eos, int) else set(eos or ())
        if self._tokenizer.eos_token_id is not None:
            eos_ids.add(self._tokenizer.eos_token_id)
        if not eos_ids:
            raise UsageError(f"{model}: neither the model nor the tokenizer names an end-of-sequence token")
        self._eos_ids = eos_ids
        pad_id = self._tokenizer.pad_token_id
        if pad_id is None:
            pad_id = min(eos_ids)
            self._tokenizer.pad_token_id = pad_id
        # A fresh config instead of the model's: generate() would otherwise fill unset fields
        # from generation_config.json (repetition penalty, top-k, ...), and only the evaluation's
        # own settings may apply.
        self._model.generation_config = GenerationConfig(eos_token_id=sorted(eos_ids), pad_token_id=pad_id)

    def generate(self, requests: Sequence[Request], settings: SamplingSettings) -> Iterator[Generation]:
        """Yield the generations batch by batch; batches group prompts of similar length."""
        prompts = [render_prompt(self._tokenizer, request.messages, self._templated) for request in requests]
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))
        for start in range(0, len(order), self._batch_size):
            batch = order[start : start + self._batch_size]
            yield from self._generate_batch([requests[i] for i in batch], [prompts[i] for i in batch], settings)

    @torch.inference_mode()
    def _generate_batch(
        self, requests: Sequence[Request], prompts: Sequence[str], settings: SamplingSettings
    ) -> list[Generation]:
        encoded = self._tokenizer(
            list(prompts), return_tensors="pt", padding=True, add_special_tokens=not self._templated
        ).to(self._device)
        processors = LogitsProcessorList()
        if settings.temperature > 0:
            seeds = [sample_seed(settings.seed, r.prompt_id, r.sample_index) for r in requests]
            processors.append(_PerRowSampler(seeds, settings.temperature, settings.top_p))
        output = self._model.generate(
            **encoded,
            # End-of-sequence and padding ids come from the model's (fresh) config.
            generation_config=GenerationConfig(max_new_tokens=settings.max_tokens, do_sample=False),
            logits_processor=processors,
        )
        completions = output[:, encoded["input_ids"].shape[1] :].tolist()
        return [self._finish(request, prompt, ids) for request, prompt, ids in zip(requests, prompts, completions, strict=True)]

    def _finish(self, request: Request, prompt: str, ids: list[int]) -> Generation:
        """Cut one row of ``generate``'s output (completion ids, padded after the EOS) into a Generation."""
        end = next((i for i, token in enumerate(ids) if token in self._eos_ids), None)
        if end is None:
            kept, text_ids, finish = ids, ids, "length"
        else:
            kept, text_ids, finish = ids[: end + 1], ids[:end], "stop"
        return Generation(
            prompt_id=request.prompt_id,
            sample_index=request.sample_index,
            prompt=prompt,
            text=self._tokenizer.decode(text_ids, skip_special_tokens=True),
            token_count=len(kept),
            finish_reason=finish,
        )

    def close(self) -> None:
        """Drop the model; frees its GPU memory."""
        self._model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
