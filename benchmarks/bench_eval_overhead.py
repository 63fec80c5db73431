"""The overhead of `fipo eval` over calling vLLM directly on the same prompts (CPU backend, tiny model).

Run by hand with a python that has vLLM (`bash scripts/install-cpu.sh DIR` builds one on CPU):

    VLLM_ENABLE_V1_MULTIPROCESSING=0 DIR/bin/python benchmarks/bench_eval_overhead.py

One engine is started once and reused, so start-up is not counted. Three timings on the same
requests (AIME 2024, --samples × 30 problems, per-sample seeds):

    direct       vllm.LLM.generate on the rendered prompts with per-request SamplingParams
    generation   fipo's generation path: the vllm engine, the samples file, appended and synced
    evaluation   the whole `fipo eval`: generation, then grading (dapo and math-verify) and metrics
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")

from fipo_cli.assets.tiny_model import build_tiny_model
from fipo_cli.eval import pipeline
from fipo_cli.eval.engines import make_engine
from fipo_cli.eval.engines.base import render_prompt, sample_seed
from fipo_cli.eval.problems import load_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from vllm import SamplingParams

    work = Path(tempfile.mkdtemp(prefix="fipo-bench-"))
    model = build_tiny_model(work / "tiny")
    benchmark = load_benchmark("aime24")
    settings = pipeline.EvalSettings(
        benchmark="aime24", model=str(model), engine="vllm", samples=args.samples, temperature=1.0, top_p=0.7,
        max_tokens=args.max_tokens, seed=0, prompt_format="dapo", chat_template=True,
    )
    engine = make_engine("vllm", str(model))
    requests = pipeline.missing_requests(benchmark, settings, [])
    llm = engine._replica._llm  # the very model fipo's engine loaded (one in-process replica on CPU)
    tokenizer = llm.get_tokenizer()
    # The inputs fipo's engine gives vLLM: templated prompts as token ids, no extra special tokens.
    prompts = [
        {"prompt_token_ids": tokenizer.encode(render_prompt(tokenizer, request.messages, True), add_special_tokens=False)}
        for request in requests
    ]
    params = [
        SamplingParams(temperature=1.0, top_p=0.7, max_tokens=args.max_tokens,
                       seed=sample_seed(0, request.prompt_id, request.sample_index))
        for request in requests
    ]

    class Reused:
        """The already-started engine, so fipo's timings exclude start-up as the direct one does."""

        name = "vllm"

        def generate(self, batch, sampling):
            return engine.generate(batch, sampling)

        def close(self) -> None:
            pass

    timings: dict[str, list[float]] = {"direct": [], "generation": [], "evaluation": []}
    for repeat in range(args.repeats):
        start = time.perf_counter()
        llm.generate(prompts, params, use_tqdm=False)
        timings["direct"].append(time.perf_counter() - start)

        start = time.perf_counter()
        pipeline.generate(benchmark, settings, work / f"gen-{repeat}", Reused)
        timings["generation"].append(time.perf_counter() - start)

        start = time.perf_counter()
        pipeline.evaluate(benchmark, settings, work / f"eval-{repeat}", Reused)
        timings["evaluation"].append(time.perf_counter() - start)
    engine.close()

    median = {name: statistics.median(values) for name, values in timings.items()}
    print(f"{len(requests)} samples (30 problems × {args.samples}), max {args.max_tokens} tokens, "
          f"{os.cpu_count()} CPUs, median of {args.repeats}")
    print("| path | time | over direct |")
    print("|---|---|---|")
    for name, seconds in median.items():
        print(f"| {name} | {seconds:.2f} s | {(seconds / median['direct'] - 1) * 100:+.1f} % |")


if __name__ == "__main__":
    main()
