"""A run's verl checkpoints as Hugging Face models: verl's layout, steps, the merge and its cache."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.verl_adapter import checkpoints
from fipo_cli.verl_adapter.checkpoints import checkpoint_steps, hf_model_for, run_max_tokens, select_steps

from checkpointed import MAX_RESPONSE_LENGTH, WORLD_SIZE, actor_dir


@pytest.fixture
def project(checkpointed_run: Path) -> Path:
    """The project of the session's checkpointed run (tests/checkpointed.py)."""
    return checkpointed_run.parent.parent.parent.parent


@pytest.fixture
def run_dir(checkpointed_run: Path) -> Path:
    return checkpointed_run


def test_the_stand_in_wrote_verls_layout(run_dir):
    checkpoint_dir = run_dir / "checkpoints"
    assert (checkpoint_dir / "latest_checkpointed_iteration.txt").read_text() == "4"
    for step in (2, 4):
        assert (checkpoint_dir / f"global_step_{step}" / "data.pt").is_file()
        actor = actor_dir(run_dir, step)
        assert json.loads((actor / "fsdp_config.json").read_text()) == {"FSDP_version": 1, "world_size": WORLD_SIZE}
        for rank in range(WORLD_SIZE):
            for kind in ("model", "optim", "extra_state"):
                assert (actor / f"{kind}_world_size_{WORLD_SIZE}_rank_{rank}.pt").is_file()
        hf_files = {p.name for p in (actor / "huggingface").iterdir()}
        assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= hf_files


def test_steps_n_latest_and_all(run_dir):
    assert checkpoint_steps(run_dir) == [2, 4]
    assert select_steps(run_dir, "2") == [2]
    assert select_steps(run_dir, "latest") == [4]
    assert select_steps(run_dir, "all") == [2, 4]
    with pytest.raises(UsageError) as missing:
        select_steps(run_dir, "3")
    assert "step 3" in missing.value.message and "2, 4" in missing.value.hint


def test_steps_count_only_actor_checkpoints(tmp_path):
    # verl's rotation (max_actor_ckpt_to_keep) deletes global_step_N/actor/ and keeps data.pt.
    checkpoint_dir = tmp_path / "checkpoints"
    (checkpoint_dir / "global_step_10").mkdir(parents=True)
    (checkpoint_dir / "global_step_10" / "data.pt").write_bytes(b"")
    (checkpoint_dir / "global_step_20" / "actor").mkdir(parents=True)
    (checkpoint_dir / "global_step_20" / "actor" / "fsdp_config.json").write_text("{}")
    (checkpoint_dir / "latest_checkpointed_iteration.txt").write_text("20")
    assert checkpoint_steps(tmp_path) == [20]
    assert select_steps(tmp_path, "latest") == [20]
    with pytest.raises(UsageError) as missing:
        hf_model_for(tmp_path, 10)
    assert "20" in missing.value.hint


def test_a_run_without_checkpoints_is_a_usage_error(tmp_path):
    for step in ("latest", "all", "5"):
        with pytest.raises(UsageError, match="has no actor checkpoints"):
            select_steps(tmp_path, step)
    with pytest.raises(UsageError, match="has no actor checkpoints"):
        hf_model_for(tmp_path, 5)


def test_merged_model_matches_the_trained_one_and_is_cached(run_dir, tiny_model, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    actor = actor_dir(run_dir, 2)
    # What a merge killed by SIGKILL leaves behind: it must not count as a merged model.
    stale = actor / ".huggingface_merged.999.dead.tmp"
    stale.mkdir()
    (stale / "config.json").write_text("{}")

    merged = hf_model_for(run_dir, 2)
    assert merged == actor / checkpoints.MERGED_DIR
    assert sorted(p.name for p in actor.iterdir() if p.name.startswith(".")) == [stale.name]

    tokens = torch.tensor([[3, 17, 42, 101, 7, 250]])
    reference = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(tokens).logits
        reference_logits = reference(tokens).logits
        # verl's merger stores bfloat16: the same model with its weights rounded to bfloat16.
        rounded_logits = reference.to(torch.bfloat16).to(torch.float32)(tokens).logits
    torch.testing.assert_close(logits, rounded_logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, reference_logits, rtol=0, atol=0.1)
    messages = [{"role": "user", "content": "What is 1 + 1?"}]
    assert AutoTokenizer.from_pretrained(merged).apply_chat_template(messages, tokenize=False) == (
        AutoTokenizer.from_pretrained(tiny_model).apply_chat_template(messages, tokenize=False)
    )
    # transformers writes the weights private to their owner; the cache is as readable as the checkpoint.
    checkpoint_mode = (actor / "fsdp_config.json").stat().st_mode
    assert {p.stat().st_mode for p in merged.iterdir()} == {checkpoint_mode}

    before = [(p.name, p.stat().st_ino, p.stat().st_mtime_ns) for p in [merged, *sorted(merged.iterdir())]]

    def no_merge(*args, **kwargs):
        raise AssertionError("merged again")

    monkeypatch.setattr(subprocess, "run", no_merge)
    assert hf_model_for(run_dir, 2) == merged
    assert [(p.name, p.stat().st_ino, p.stat().st_mtime_ns) for p in [merged, *sorted(merged.iterdir())]] == before


def test_a_failed_merge_reports_the_mergers_output_and_caches_nothing(run_dir, tmp_path):
    # A checkpoint whose shard was cut short, as by a trainer killed while saving it.
    broken = tmp_path / "checkpoints" / "global_step_6" / "actor"
    shutil.copytree(actor_dir(run_dir, 2), broken, ignore=shutil.ignore_patterns(checkpoints.MERGED_DIR, ".*"))
    shard = broken / f"model_world_size_{WORLD_SIZE}_rank_1.pt"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(FipoError) as failed:
        hf_model_for(tmp_path, 6)
    message = failed.value.message
    assert "verl's model merger failed" in message and "exit code 1" in message
    assert "Error" in message.splitlines()[-1]  # the merger's last line: the exception it died of
    assert "verl.model_merger merge --backend fsdp" in failed.value.hint
    assert not [p.name for p in broken.iterdir() if p.name.startswith((".", checkpoints.MERGED_DIR))]


def test_run_max_tokens_is_the_runs_response_length(run_dir, tmp_path):
    assert run_max_tokens(run_dir) == MAX_RESPONSE_LENGTH
    with pytest.raises(UsageError, match=r"config\.yaml does not exist"):
        run_max_tokens(tmp_path)
