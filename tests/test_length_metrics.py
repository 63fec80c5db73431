"""Whole-batch length metrics in verl 0.9.1: the pure function, the hook on verl's own data metrics, the loggers."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import verl
from verl import DataProto
from verl.trainer.ppo import metric_utils

from fipo_cli.loss.length_metrics import LENGTH_WEIGHTED_ADVANTAGE, PERCENTILES, length_metrics
from fipo_cli.verl_adapter import plugin as verl_plugin

import wandb_records

PROMPT, RESPONSE = 6, 16
#: Aborted (0) and cut (16 = RESPONSE) responses included.
LENGTHS = [0, 16, 3, 7, 16, 1, 9, 12, 5, 16, 2, 8]
VERL_KEYS = ("response_length/mean", "response_length/min", "response_length/max")


def verl_batch(lengths: list[int], *, v1: bool = False, seed: int = 0) -> DataProto:
    """A training batch as verl's trainers hand it to ``compute_data_metrics``.

    Legacy layout (``v1=False``, as ``RayPPOTrainer.fit`` has it): left-padded prompts and
    right-padded responses with one ``attention_mask`` over both. v1 layout (main_ppo's
    default trainer): no attention mask; ``prompt_length``/``response_length`` as float
    tensors. GRPO advantages: one value per response on its tokens, the reward on its last token.
    """
    generator = torch.Generator().manual_seed(seed)
    batch_size = len(lengths)
    positions = torch.arange(RESPONSE)
    response_mask = (positions[None, :] < torch.tensor(lengths)[:, None]).long()
    prompt_lengths = torch.randint(1, PROMPT + 1, (batch_size,), generator=generator)
    prompt_mask = (torch.arange(PROMPT)[None, :] >= (PROMPT - prompt_lengths)[:, None]).long()
    scores = torch.randint(0, 2, (batch_size,), generator=generator).float() * 2 - 1
    advantages = (scores - scores.mean())[:, None] * response_mask
    last = (torch.tensor(lengths) - 1).clamp(min=0)
    token_level = torch.zeros(batch_size, RESPONSE).scatter(1, last[:, None], scores[:, None]) * response_mask
    tensors = {
        "prompts": torch.randint(3, 100, (batch_size, PROMPT), generator=generator) * prompt_mask,
        "responses": torch.randint(3, 100, (batch_size, RESPONSE), generator=generator) * response_mask,
        "response_mask": response_mask,
        "advantages": advantages,
        "returns": advantages,
        "token_level_scores": token_level,
        "token_level_rewards": token_level,
    }
    if v1:
        tensors |= {"prompt_length": prompt_lengths.float(), "response_length": torch.tensor(lengths).float()}
    else:
        tensors["attention_mask"] = torch.cat([prompt_mask, response_mask], dim=1)
    return DataProto.from_dict(tensors=tensors)


def naive(lengths: list[int], batch: DataProto) -> dict[str, float]:
    """The expected values, from numpy on the true lengths and the batch's tensors."""
    true = np.asarray(lengths, dtype=np.float64)
    advantages = batch.batch["advantages"].numpy().astype(np.float64)
    mask = batch.batch["response_mask"].numpy()
    expected = {name: float(np.percentile(true, q)) for name, q in PERCENTILES.items()}
    expected[LENGTH_WEIGHTED_ADVANTAGE] = float((advantages * mask).sum() / true.sum())
    return expected


def test_the_pure_function_matches_numpy_on_many_batches():
    generator = np.random.default_rng(7)
    for _ in range(50):
        batch_size = int(generator.integers(1, 40))
        lengths = generator.integers(0, 200, batch_size)
        lengths[0] = max(lengths[0], 1)
        mask = torch.arange(200)[None, :] < torch.as_tensor(lengths)[:, None]
        advantages = torch.as_tensor(generator.normal(size=(batch_size, 200)), dtype=torch.bfloat16)
        got = length_metrics(torch.as_tensor(lengths, dtype=torch.float32), advantages, mask)
        for name, q in PERCENTILES.items():
            assert got[name] == pytest.approx(np.percentile(lengths, q), abs=1e-9)
        weighted = (advantages.double().numpy() * mask.numpy()).sum() / lengths.sum()
        assert got[LENGTH_WEIGHTED_ADVANTAGE] == pytest.approx(weighted, rel=1e-12)


def test_empty_batches_and_batches_without_tokens_give_nan():
    empty = length_metrics(torch.zeros(0), torch.zeros(0, 4), torch.zeros(0, 4))
    assert set(empty) == {*PERCENTILES, LENGTH_WEIGHTED_ADVANTAGE} and all(np.isnan(v) for v in empty.values())
    aborted = length_metrics(torch.zeros(3), torch.zeros(3, 4), torch.zeros(3, 4))
    assert aborted["response_length/p90"] == 0.0 and np.isnan(aborted[LENGTH_WEIGHTED_ADVANTAGE])


@pytest.mark.parametrize("v1", [False, True], ids=["legacy-attention-mask", "v1-lengths-in-batch"])
def test_verls_data_metrics_gain_the_whole_batch_percentiles(v1):
    batch = verl_batch(LENGTHS, v1=v1)

    metrics = metric_utils.compute_data_metrics(batch=batch, use_critic=False)

    # verl's own keys are still there, computed from the same lengths.
    assert metrics["response_length/mean"] == pytest.approx(np.mean(LENGTHS))
    assert (metrics["response_length/min"], metrics["response_length/max"]) == (0, 16)
    expected = naive(LENGTHS, batch)
    assert {name: metrics[name] for name in expected} == pytest.approx(expected, abs=1e-9)
    assert metrics["response_length/p25"] == 2.75 and metrics["response_length/median"] == 7.5
    # Single-turn: every response token is in the mask, so Ā is verl's token mean of the advantages.
    assert metrics[LENGTH_WEIGHTED_ADVANTAGE] == pytest.approx(metrics["critic/advantages/mean"], rel=1e-6)


def test_the_hook_is_installed_once_at_import_verl(tmp_path):
    assert metric_utils.compute_data_metrics.fipo_length_metrics
    before = metric_utils.compute_data_metrics
    verl_plugin.install_length_metrics()
    assert metric_utils.compute_data_metrics is before
    assert before.__wrapped__.__module__ == "verl.trainer.ppo.metric_utils"
    # A fresh process outside the repository: only the installed entry point can have wrapped it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import verl
            from verl.trainer.ppo.metric_utils import compute_data_metrics
            print(compute_data_metrics.fipo_length_metrics)
            """
        )],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip() == "True", result.stderr


def test_every_verl_trainer_binds_compute_data_metrics_from_metric_utils():
    """The hook works because each caller imports the name from metric_utils after `import verl`.

    A verl that called a copy, or imported it another way, would log no percentiles: this
    fails first.
    """
    callers = []
    for path in Path(verl.__file__).parent.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        if "compute_data_metrics(" not in source or path.name == "metric_utils.py":
            continue
        tree = ast.parse(source)
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and getattr(node.func, "id", getattr(node.func, "attr", None)) == "compute_data_metrics"]
        if not calls:
            continue
        callers.append(path.relative_to(Path(verl.__file__).parent).as_posix())
        imported = [node for node in tree.body if isinstance(node, ast.ImportFrom)
                    and node.module == "verl.trainer.ppo.metric_utils"
                    and "compute_data_metrics" in {alias.name for alias in node.names}]
        assert imported, f"{path} calls compute_data_metrics without importing it from metric_utils"
    assert {"trainer/ppo/ray_trainer.py", "trainer/ppo/v1/trainer_base.py"} <= set(callers)


def test_every_logger_gets_the_metrics(tmp_path, offline_wandb, monkeypatch):
    """verl's Tracking with the file logger and W&B (offline), as the trainer logs a step."""
    import wandb
    from verl.utils.tracking import Tracking

    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "metrics.jsonl"))
    batch = verl_batch(LENGTHS)
    metrics = metric_utils.compute_data_metrics(batch=batch, use_critic=False)
    tracking = Tracking("fipo-test", "exp-run", default_backend=["file", "wandb"], config={"trainer": {}})
    tracking.log(data=metrics, step=3)
    tracking.finish()
    wandb.teardown()

    expected = naive(LENGTHS, batch)
    (line,) = (tmp_path / "metrics.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["step"] == 3
    assert {name: record["data"][name] for name in expected} == pytest.approx(expected)
    (path,) = wandb_records.run_files(offline_wandb)
    (row,) = wandb_records.history(path)
    assert row["_step"] == 3
    assert {name: row[name] for name in [*expected, *VERL_KEYS]} == pytest.approx({**expected, **{
        name: metrics[name] for name in VERL_KEYS}})
