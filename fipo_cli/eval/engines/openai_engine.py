"""The openai engine: any OpenAI-compatible server (``vllm serve``, SGLang) over HTTP.

Standard library only (urllib and threads), so the engine needs no dependency beyond fipo's
core. One HTTP request per sample, ``concurrency`` in flight at most, each with its own
``seed`` (:func:`sample_seed`). With the chat template the engine posts the messages to
``/chat/completions`` and the server applies its template; without, it posts the plain prompt
to ``/completions``.

The server's defaults fill every sampling knob the request leaves out: ``vllm serve`` takes
them from the model's ``generation_config.json`` (a repetition penalty, top-k) unless started
with ``--generation-config vllm``.

The API key is read from the environment variable named by ``api_key_env`` and only ever
placed in the Authorization header: no error message, log line or attribute repr shows it.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.eval.engines.base import (
    Generation,
    Message,
    Request,
    SamplingSettings,
    plain_prompt,
    render_prompt,
    sample_seed,
    uses_chat_template,
)

# Back-off before retry k (0-based) is BACKOFF_S · 2^k, capped; 429 and 5xx are worth a retry.
BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def api_base(base_url: str) -> str:
    """``base_url`` as the OpenAI SDK takes it (``http://host:port/v1``): ``/v1`` is added when
    the URL has no path, a trailing slash dropped."""
    parsed = urllib.parse.urlsplit(base_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise UsageError(f"base URL {base_url!r}: expected http(s)://HOST:PORT/v1")
    path = parsed.path.rstrip("/") or "/v1"
    return urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


class OpenAIEngine:
    """``model``: the served model name (``vllm serve``'s ``--served-model-name``, by default its path)."""

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        use_chat_template: bool = True,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout_s: float = 600.0,
        retries: int = 3,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        if concurrency < 1:
            raise UsageError(f"concurrency {concurrency}: must be ≥ 1")
        if timeout_s <= 0:
            raise UsageError(f"timeout {timeout_s}: must be > 0 seconds")
        if retries < 0:
            raise UsageError(f"retries {retries}: must be ≥ 0")
        self._model = model
        self._base = api_base(base_url)
        self._chat = use_chat_template
        self._concurrency = concurrency
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._headers = {"Content-Type": "application/json", "User-Agent": "fipo"}
        key = os.environ.get(api_key_env)
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._render = _template_renderer(model) if use_chat_template else None

    def generate(self, requests: Sequence[Request], settings: SamplingSettings) -> Iterator[Generation]:
        """Yield generations as their HTTP requests complete.

        A request that still fails after the retries raises :class:`FipoError`. When that
        happens, or the caller stops reading, the requests not yet sent are cancelled and those
        in flight finish in the background (their answers are dropped).
        """
        pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="fipo-openai")
        try:
            # At most `concurrency` requests run (one per worker thread); the rest wait in the
            # pool's queue. Futures are cheap, so all are submitted up front.
            futures: set[Future[Generation]] = {pool.submit(self._one, r, settings) for r in requests}
            while futures:
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            # No waiting: a Ctrl-C must not sit out requests that may take up to the timeout.
            pool.shutdown(wait=False, cancel_futures=True)

    def _one(self, request: Request, settings: SamplingSettings) -> Generation:
        """One sample: one POST, retried; raises FipoError on failure or an unusable answer."""
        body: dict[str, Any] = {
            "model": self._model,
            "n": 1,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
            "seed": sample_seed(settings.seed, request.prompt_id, request.sample_index),
        }
        if self._chat:
            endpoint = "/chat/completions"
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            prompt = self._render(request.messages) if self._render else plain_prompt(request.messages)
        else:
            endpoint = "/completions"
            body["prompt"] = prompt = plain_prompt(request.messages)
        answer = self._post(endpoint, body)
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] if self._chat else choice["text"]
            finish = choice["finish_reason"]
            tokens = int(answer["usage"]["completion_tokens"])
        except (KeyError, IndexError, TypeError, ValueError) as error:
            raise FipoError(f"{self._base}{endpoint}: unexpected answer ({error!r}): {str(answer)[:300]}") from None
        if finish not in ("stop", "length"):
            raise FipoError(
                f"{self._base}{endpoint}: sample {request.sample_index} of {request.prompt_id!r} "
                f"finished with {finish!r}, expected 'stop' or 'length'"
            )
        return Generation(
            prompt_id=request.prompt_id,
            sample_index=request.sample_index,
            prompt=prompt,
            text=text or "",
            token_count=tokens,
            finish_reason=finish,
        )

    def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` as JSON; retry 429, 5xx, connection errors and timeouts with back-off."""
        url = self._base + endpoint
        data = json.dumps(body).encode()
        problem = ""
        for attempt in range(self._retries + 1):
            if attempt:
                time.sleep(min(self._backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S))
            request = urllib.request.Request(url, data=data, headers=self._headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                    return json.load(response)
            except urllib.error.HTTPError as error:
                problem = f"HTTP {error.code}: {_error_text(error)}"
                if error.code not in _RETRY_STATUS:
                    raise FipoError(f"{url}: {problem}", hint=_hint(error.code)) from None
            except (OSError, http.client.HTTPException) as error:
                # URLError (refused, DNS), TimeoutError, a connection reset mid-answer.
                problem = str(getattr(error, "reason", None) or error) or type(error).__name__
            except json.JSONDecodeError as error:
                raise FipoError(f"{url}: the answer is not JSON ({error})") from None
        raise FipoError(
            f"{url}: failed {self._retries + 1} times; last: {problem}",
            hint="check that the server is up at this base URL, or raise the retries or the timeout",
        )

    def close(self) -> None:
        """Nothing to free: every request's connection is closed when it completes."""


def _error_text(error: urllib.error.HTTPError) -> str:
    """The server's error message from an HTTP error answer (OpenAI's ``{"error": {"message"}}``)."""
    try:
        raw = error.read().decode(errors="replace")
    except OSError:
        return error.reason or ""
    try:
        detail = json.loads(raw)["error"]
        return str(detail.get("message", detail) if isinstance(detail, dict) else detail)[:500]
    except (ValueError, KeyError, TypeError):
        return raw[:500] or str(error.reason)


def _hint(status: int) -> str | None:
    if status in (401, 403):
        return "the server refused the API key: set the variable named by --api-key-env"
    if status == 404:
        return "check the base URL (…/v1) and the model name the server serves (GET /v1/models)"
    return None


def _template_renderer(model: str) -> Any:
    """A function rendering messages with ``model``'s chat template, to record the prompt the
    server builds; ``None`` when ``model`` is not a local directory whose tokenizer transformers
    can load (then the server's rendering is unknown and the plain prompt is recorded)."""
    if not Path(model).is_dir():
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
    except Exception:
        return None
    if not uses_chat_template(tokenizer, True):
        return None

    def render(messages: Sequence[Message]) -> str:
        return render_prompt(tokenizer, messages, True)

    return render
