"""The vLLM engine: offline ``vllm.LLM``, tensor parallel within a replica, data parallel across replicas.

Requests are cut into chunks of ``chunk_size``; each chunk is one ``LLM.generate`` call (vLLM
batches continuously inside it) and its generations are yielded when it finishes, so the
caller can save and count them while the next chunk runs.

Data parallelism: vLLM 0.32's ``LLM`` refuses ``data_parallel_size > 1`` in one process, and an
evaluation needs no coordination between replicas of a dense model, so with ``dp > 1`` the
engine starts ``dp`` independent replica processes, each an ``LLM`` on its own
``tensor_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES`` sliced), all pulling chunks from one
queue. Every sample's seed is its own (:func:`sample_seed`), so the outputs do not depend on
which replica drew which chunk. With ``dp == 1`` the ``LLM`` runs in this process.

vLLM is imported inside the replica, never at module level: in data-parallel mode this process
only hands out chunks and must not pay vLLM's import or touch the GPUs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.core.gpus import visible_devices
from fipo_cli.eval.engines.base import (
    Generation,
    Request,
    SamplingSettings,
    render_prompt,
    sample_seed,
    uses_chat_template,
)

# How long the driver waits on the result queue before checking that every replica is alive.
_REPLICA_POLL_S = 1.0
# How long close() waits for the replicas to exit after asking them to.
_JOIN_S = 60.0


@dataclass(frozen=True)
class _ReplicaOptions:
    """What a replica needs to build its ``LLM``; picklable for the replica processes."""

    model: str
    use_chat_template: bool
    tensor_parallel_size: int
    dtype: str
    on_cpu: bool


class _Replica:
    """One ``vllm.LLM`` and the prompt rendering for it."""

    def __init__(self, options: _ReplicaOptions) -> None:
        # vLLM logs to stdout by default, where `fipo eval --json` prints its results; read
        # when vllm is first imported, and inherited by replica processes.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        from vllm import LLM

        self._llm = LLM(
            model=options.model,
            tensor_parallel_size=options.tensor_parallel_size,
            dtype=options.dtype,
            # On CPU: graph capture costs ~40 s a start, and a prompt split across steps by
            # chunked prefill makes vLLM rewind the request's seeded generator, which torch's
            # CPU generator cannot do ("CPU Generator does not use offset").
            enforce_eager=options.on_cpu,
            enable_chunked_prefill=not options.on_cpu,
        )
        self._tokenizer = self._llm.get_tokenizer()
        self._templated = uses_chat_template(self._tokenizer, options.use_chat_template)

    def generate(self, requests: Sequence[Request], settings: SamplingSettings) -> list[Generation]:
        """One ``LLM.generate`` call over ``requests``; returns their generations in input order."""
        from vllm import SamplingParams

        prompts = [render_prompt(self._tokenizer, request.messages, self._templated) for request in requests]
        # Tokenized here, so that templated prompts get no second BOS whatever vLLM's default.
        inputs = [
            {"prompt_token_ids": self._tokenizer.encode(prompt, add_special_tokens=not self._templated)}
            for prompt in prompts
        ]
        params = [
            SamplingParams(
                n=1,
                temperature=settings.temperature,
                top_p=settings.top_p,
                max_tokens=settings.max_tokens,
                seed=sample_seed(settings.seed, request.prompt_id, request.sample_index),
            )
            for request in requests
        ]
        outputs = self._llm.generate(inputs, params, use_tqdm=False)
        return [_generation(request, prompt, output) for request, prompt, output in zip(requests, prompts, outputs, strict=True)]

    def close(self) -> None:
        self._llm = None


def _generation(request: Request, prompt: str, output: Any) -> Generation:
    """A Generation from one vLLM ``RequestOutput`` (n=1)."""
    completion = output.outputs[0]
    if completion.finish_reason not in ("stop", "length"):
        raise FipoError(
            f"vLLM did not finish sample {request.sample_index} of {request.prompt_id!r}: "
            f"finish reason {completion.finish_reason!r}"
        )
    return Generation(
        prompt_id=request.prompt_id,
        sample_index=request.sample_index,
        prompt=prompt,
        text=completion.text,
        token_count=len(completion.token_ids),
        finish_reason=completion.finish_reason,
    )


def _replica_main(options: _ReplicaOptions, tasks: Any, results: Any) -> None:
    """A replica process: build the LLM, then answer chunks until the ``None`` sentinel.

    ``tasks`` yields ``(call_id, chunk_id, requests, settings)``; ``results`` receives
    ``("ready", None, None)``, ``("done", (call_id, chunk_id), generations)`` or
    ``("error", None, traceback_text)`` (after which the replica exits).
    """
    try:
        replica = _Replica(options)
        results.put(("ready", None, None))
        while (task := tasks.get()) is not None:
            call_id, chunk_id, requests, settings = task
            results.put(("done", (call_id, chunk_id), replica.generate(requests, settings)))
        replica.close()
    except BaseException:
        results.put(("error", None, traceback.format_exc()))


def _visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` entries (ids or UUIDs)."""
    import torch

    count = torch.cuda.device_count()
    listed = visible_devices(os.environ)
    if listed is None:
        return [str(i) for i in range(count)]
    return listed[:count]


def _parallel_sizes(tp: int | None, dp: int | None, gpus: int) -> tuple[int, int]:
    """(tensor, data) parallel sizes: all visible GPUs in one tensor-parallel group by default;
    one size given, the other fills the GPUs. Without GPUs (vLLM's CPU backend) both are 1,
    except that ``dp`` replicas may share the CPU (for tests)."""
    for label, size in (("tensor", tp), ("data", dp)):
        if size is not None and size < 1:
            raise UsageError(f"{label} parallel size {size}: must be ≥ 1")
    if gpus == 0:
        if (tp or 1) != 1:
            raise UsageError(f"tensor parallel size {tp}: no GPU is visible, and vLLM's CPU backend runs one")
        return 1, dp or 1
    tp = tp or max(1, gpus // (dp or 1))
    dp = dp or max(1, gpus // tp)
    if tp * dp > gpus:
        raise UsageError(f"tensor parallel {tp} × data parallel {dp} needs {tp * dp} GPUs; {gpus} are visible")
    return tp, dp


class VLLMEngine:
    """``model``: a local directory or hub id; ``chunk_size``: requests per ``LLM.generate`` call at most."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        use_chat_template: bool = True,
        tensor_parallel_size: int | None = None,
        data_parallel_size: int | None = None,
        dtype: str = "auto",
        chunk_size: int = 256,
    ) -> None:
        gpus = _visible_gpus()
        tp, dp = _parallel_sizes(tensor_parallel_size, data_parallel_size, len(gpus))
        # On the CPU backend graph compilation costs ~40 s per start and buys nothing at the
        # scale anyone evaluates on a CPU; on GPUs vLLM's default (CUDA graphs) stays.
        options = _ReplicaOptions(model, use_chat_template, tp, dtype, on_cpu=not gpus)
        self.tensor_parallel_size, self.data_parallel_size = tp, dp
        self._chunk_size = chunk_size
        self._calls = 0
        self._replica: _Replica | None = None
        self._processes: list[Any] = []
        if dp == 1:
            self._replica = _Replica(options)
        else:
            self._start_replicas(options, [gpus[r * tp : (r + 1) * tp] for r in range(dp)])

    def _start_replicas(self, options: _ReplicaOptions, devices: list[list[str]]) -> None:
        """Start one process per device group and wait until every replica has loaded the model."""
        # spawn, not fork: a forked child would inherit this process's CUDA and thread state.
        context = multiprocessing.get_context("spawn")
        self._tasks, self._results = context.Queue(), context.Queue()
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            for group in devices:
                # A spawned child copies os.environ when it starts: this is how each replica
                # gets its own GPUs before anything in it initialises CUDA.
                if group:
                    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(group)
                # Not daemonic: vLLM starts its own engine-core processes inside a replica.
                process = context.Process(target=_replica_main, args=(options, self._tasks, self._results))
                process.start()
                self._processes.append(process)
        finally:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved
        for _ in self._processes:
            self._next_result()  # "ready": nothing else is in flight yet

    def _next_result(self) -> tuple[str, Any, Any]:
        """The next message of any replica; a replica error or death becomes a FipoError."""
        while True:
            try:
                message = self._results.get(timeout=_REPLICA_POLL_S)
            except queue.Empty:
                dead = [p for p in self._processes if not p.is_alive()]
                if dead:
                    self.close()
                    raise FipoError(f"a vLLM replica exited with code {dead[0].exitcode} before finishing") from None
                continue
            if message[0] == "error":
                self.close()
                raise FipoError(f"a vLLM replica failed:\n{message[2]}")
            return message

    def generate(self, requests: Sequence[Request], settings: SamplingSettings) -> Iterator[Generation]:
        """Yield generations chunk by chunk, as chunks finish (in any order across replicas)."""
        # Small calls are split evenly so that every replica gets a share.
        size = max(1, min(self._chunk_size, -(-len(requests) // self.data_parallel_size)))
        chunks = [requests[i : i + size] for i in range(0, len(requests), size)]
        if self._replica is not None:
            for chunk in chunks:
                yield from self._replica.generate(chunk, settings)
            return
        self._calls += 1
        call_id = self._calls
        for chunk_id, chunk in enumerate(chunks):
            self._tasks.put((call_id, chunk_id, list(chunk), settings))
        pending = set(range(len(chunks)))
        try:
            while pending:
                _, (result_call, chunk_id), generations = self._next_result()
                # A chunk of an earlier call that its caller stopped reading: drop it.
                if result_call == call_id:
                    pending.discard(chunk_id)
                    yield from generations
        finally:
            if pending:
                # The caller stopped early: take back the chunks no replica has started.
                try:
                    while True:
                        self._tasks.get_nowait()
                except queue.Empty:
                    pass

    def close(self) -> None:
        """Free the model: drop the in-process LLM, or stop the replica processes."""
        if self._replica is not None:
            self._replica.close()
            self._replica = None
        processes, self._processes = self._processes, []
        for process in processes:
            if process.is_alive():
                self._tasks.put(None)
        # Keep reading results while they exit: a replica cannot exit while a result it sent
        # still sits in its queue's pipe.
        deadline = time.monotonic() + _JOIN_S
        while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                self._results.get(timeout=_REPLICA_POLL_S)
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(_JOIN_S)
