"""Every verl key: `verl.KEY=VALUE`, the `verl:` section, sweep axes; and fipo keys verl 0.9.1 ignores.

Composed with the installed verl's config (fipo's in-process compose, which tests/test_verl_compose.py
holds to verl's own `main_ppo --cfg job`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from fipo_run import run_fipo

needs_verl = pytest.mark.skipif(importlib.util.find_spec("verl") is None, reason="verl is not installed")

LOSS = "actor_rollout_ref.actor.policy_loss"
STAND_IN = "import sys; print('stand-in trainer', len(sys.argv) - 1, 'overrides'); sys.exit(0)\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run_fipo(tmp_path, "init", "smoke", "--model", "qwen2.5-0.5b").returncode == 0
    assert run_fipo(tmp_path, "init", "tiny", "--model", "tiny", "--algo", "dapo").returncode == 0
    return tmp_path


def config_file(project: Path, name: str = "smoke") -> Path:
    return project / "experiments" / name / "fipo.yaml"


def composed(project: Path, *args: str, name: str = "smoke"):
    from fipo_cli.verl_adapter import compose as verl_compose

    result = run_fipo(project, "train", name, *args, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    return verl_compose.compose(plan["overrides"]), plan, result.stderr


@needs_verl
def test_any_verl_key_is_set_added_or_deleted_from_the_command_line_after_fipos_mapping(project):
    config, plan, _ = composed(
        project, "verl.actor_rollout_ref.rollout.enforce_eager=true", "verl.actor_rollout_ref.rollout.max_num_seqs=128",
        "verl.+actor_rollout_ref.model.override_config.rope_theta=1e6",
        "verl.~actor_rollout_ref.rollout.val_kwargs.top_k",
    )
    rollout = config.actor_rollout_ref.rollout
    assert rollout.enforce_eager is True and rollout.max_num_seqs == 128 and "top_k" not in rollout.val_kwargs
    assert config.actor_rollout_ref.model.override_config.rope_theta == 1e6
    assert plan["overrides"][-4:] == ["actor_rollout_ref.rollout.enforce_eager=true",
                                      "actor_rollout_ref.rollout.max_num_seqs=128",
                                      "++actor_rollout_ref.model.override_config.rope_theta=1000000.0",
                                      "~actor_rollout_ref.rollout.val_kwargs.top_k"]
    assert plan["verl_keys"]["actor_rollout_ref.rollout.max_num_seqs"] == 128
    # After fipo's own settings: a fixed setting of fipo's CPU mode gives way.
    tiny, _, _ = composed(project, "verl.data.dataloader_num_workers=2", name="tiny")
    assert tiny.data.dataloader_num_workers == 2
    text = run_fipo(project, "train", "smoke", "verl.actor_rollout_ref.rollout.max_num_seqs=128", "--dry-run").stdout
    assert "verl keys (applied after fipo's mapping" in text and "verl.actor_rollout_ref.rollout.max_num_seqs=128" in text


@needs_verl
def test_grad_clip_reaches_what_verls_fsdp_engine_clips_with(project):
    # verl 0.9.1's engine clips with optimizer_config.clip_grad (workers/engine/fsdp/transformer_impl.py);
    # the actor's grad_clip, the official launcher's spelling, is a field nothing reads.
    config, _, _ = composed(project, "trainer.grad_clip=0.5")
    assert config.actor_rollout_ref.actor.optim.clip_grad == 0.5
    refused = run_fipo(project, "train", "smoke", "verl.actor_rollout_ref.actor.grad_clip=0.5", "--dry-run")
    assert refused.returncode == 2 and "fipo sets this from trainer.grad_clip" in refused.stderr


@needs_verl
def test_the_verl_section_of_the_experiment_composes_and_is_recorded_in_the_run(project):
    path = config_file(project)
    path.write_text(path.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
                    + textwrap.dedent("""
                    verl:
                      actor_rollout_ref.rollout.max_num_seqs: 64
                      +actor_rollout_ref.model.override_config.rope_theta: 500000.0
                      +actor_rollout_ref.actor.policy_loss.gamma: 0.99
                    """))
    (project / "stand_in.py").write_text(STAND_IN)
    config, plan, _ = composed(project)
    assert config.actor_rollout_ref.rollout.max_num_seqs == 64
    # The official spelling `+...policy_loss.gamma` sets fipo's knob, with its official meaning.
    assert config.actor_rollout_ref.actor.policy_loss.gamma == 0.99
    assert set(plan["verl_keys"]) == {"actor_rollout_ref.rollout.max_num_seqs",
                                      "+actor_rollout_ref.model.override_config.rope_theta"}
    result = run_fipo(project, "train", "smoke", "verl.actor_rollout_ref.rollout.enforce_eager=true", CUDA_VISIBLE_DEVICES="0")
    assert result.returncode == 0, result.stderr
    (run,) = (project / "experiments" / "smoke" / "runs").iterdir()
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["verl"] == {"actor_rollout_ref.rollout.max_num_seqs": 64,
                                "+actor_rollout_ref.model.override_config.rope_theta": 500000.0,
                                "actor_rollout_ref.rollout.enforce_eager": True}
    assert recorded["algorithm"]["gamma"] == 0.99
    command = json.loads((run / "command.json").read_text())["command"]
    assert command[-1] == "actor_rollout_ref.rollout.enforce_eager=true"
    assert json.loads((run / "tracking_config.json").read_text())["fipo"]["verl"] == recorded["verl"]


@needs_verl
def test_the_official_launchers_overrides_are_taken_as_written(project):
    official = [
        f"verl.+{LOSS}.decay_rate=32.0", f"verl.+{LOSS}.chunk_size=128", f"verl.+{LOSS}.future_kl_start=include_current",
        f"verl.+{LOSS}.future_kl_window=-1", f"verl.+{LOSS}.future_kl_average=False",
        f"verl.+{LOSS}.future_kl_clip_ratio=0.2", f"verl.+{LOSS}.future_kl_clip_high_only=True",
        f"verl.+{LOSS}.safety_thresh=10.0", "verl.reward_model.overlong_buffer.enable=True",
        "verl.reward_model.overlong_buffer.len=128", "verl.reward_model.overlong_buffer.penalty_factor=0.5",
    ]
    config, _, stderr = composed(project, *official)
    loss = config.actor_rollout_ref.actor.policy_loss
    # The ratio spelling replaces the file's low/high pair: [1, 1.2] as the official launcher means.
    assert (loss.future_kl_clip_ratio, loss.future_kl_clip_high_only, loss.future_kl_clip_low) == (0.2, True, None)
    overlong = config.reward.reward_kwargs.overlong_buffer_cfg
    assert (overlong.enable, overlong.len, overlong.penalty_factor) == (True, 128, 0.5)
    assert loss.chunk_size == 128 and "chunk_size=128 does nothing" in stderr


@needs_verl
@pytest.mark.parametrize("args, message", [
    (["verl.actor_rollout_ref.rollout.enforce_eagr=true"],
     "verl.actor_rollout_ref.rollout.enforce_eagr: the installed verl's config has no key actor_rollout_ref.rollout."
     "enforce_eagr; verl's closest key is actor_rollout_ref.rollout.enforce_eager"),
    (["verl.actor_rollout_ref.model.override_config.rope_theta=1"], "to add it, write verl.+actor_rollout_ref.model"),
    (["verl.actor_rollout_ref.actor.optim.lr=2e-6"],
     "verl.actor_rollout_ref.actor.optim.lr: fipo sets this from trainer.lr; set that instead"),
    (["verl.~trainer.default_local_dir"], "fipo sets this itself, for the run's layout"),
    (["verl.actor_rollout_ref.actor={}"], "fipo sets keys under it from"),
    (["+verl.actor_rollout_ref.rollout.enforce_eager=true"], "the sign goes after the prefix"),
    (["verl.a b=1"], "after 'verl.' comes a verl key"),
    (["verl=1"], "set verl keys one by one"),
    ([f"verl.~{LOSS}.decay_rate"], "would delete algorithm.decay_rate"),
    (["tau=16", f"verl.+{LOSS}.decay_rate=8"], "algorithm.decay_rate is set twice"),
    (["data.gen_batch_size=2048"], "data.gen_batch_size=2048: verl 0.9.1 has no generation batch to size"),
    (["algorithm.max_num_gen_batches=4"], "verl 0.9.1's v1 replay buffer ignores it"),
])
def test_bad_verl_keys_are_named_with_what_to_do_and_nothing_is_written(project, args, message):
    result = run_fipo(project, "train", "smoke", *args, "--dry-run")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@needs_verl
def test_a_bad_key_in_the_verl_section_is_named(project):
    path = config_file(project)
    path.write_text(path.read_text() + "verl:\n  actor_rollout_ref.rollout.max_num_seq: 8\n  'a b': 1\n")
    result = run_fipo(project, "train", "smoke", "--dry-run")
    assert result.returncode == 2 and "verl: 'a b' is not a verl key" in result.stderr
    path.write_text(path.read_text().replace("  'a b': 1\n", ""))
    result = run_fipo(project, "train", "smoke", "--dry-run")
    assert result.returncode == 2
    assert "verl's closest key is actor_rollout_ref.rollout.max_num_seqs" in result.stderr


@needs_verl
def test_sweeps_take_verl_keys_as_axes_and_refuse_keys_verl_ignores(project):
    result = run_fipo(project, "sweep", "smoke", "verl.actor_rollout_ref.rollout.max_num_seqs=128,256", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert [run["overrides"][-1] for run in runs] == ["actor_rollout_ref.rollout.max_num_seqs=128",
                                                      "actor_rollout_ref.rollout.max_num_seqs=256"]
    assert runs[0]["name"].endswith("max_num_seqs128") and runs[0]["horizon"]["steps"] == 20
    bad = run_fipo(project, "sweep", "smoke", "verl.actor_rollout_ref.rollout.max_num_seqz=1,2", "--dry-run")
    assert bad.returncode == 2 and "closest key is actor_rollout_ref.rollout.max_num_seqs" in bad.stderr
    inert = run_fipo(project, "sweep", "tiny", "gamma=0.9,0.95", "--dry-run")
    assert inert.returncode == 2
    assert "sweeping gamma gives identical runs: algorithm.name is dapo, whose vanilla policy loss has no Future-KL" \
        in inert.stderr
    retired = run_fipo(project, "sweep", "smoke", "data.gen_batch_size=512,1024", "--dry-run")
    assert retired.returncode == 2 and "verl 0.9.1 has no generation batch to size" in retired.stderr


@needs_verl
def test_keys_verl_ignores_under_the_settings_are_warned_about_in_the_plan(project):
    tiny = config_file(project, "tiny")
    # An experiment written by an earlier fipo: the retired keys still load, with a warning each.
    tiny.write_text(tiny.read_text().replace("  shuffle: true", "  shuffle: true\n  gen_batch_size: 16")
                    .replace("  dynamic_sampling_metric: acc", "  dynamic_sampling_metric: acc\n  max_num_gen_batches: 4"))
    result = run_fipo(project, "train", "tiny", "gamma=0.99", "algorithm.overlong_buffer_len=4", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert any(w.startswith("data.gen_batch_size=16 does nothing: verl 0.9.1 has no generation batch") for w in warnings)
    assert any(w.startswith("algorithm.max_num_gen_batches=4 does nothing") for w in warnings)
    assert any(w.startswith("algorithm.gamma=0.99 does nothing: algorithm.name is dapo") for w in warnings)
    assert any(w.startswith("algorithm.overlong_buffer_len=4 does nothing: algorithm.overlong_buffer is off")
               for w in warnings)
    assert all(result.stderr.count(f"warning: {w}") == 1 for w in warnings)
    overrides = json.loads(result.stdout)["overrides"]
    assert not any(o.startswith(("data.gen_batch_size", "algorithm.filter_groups.max_num_gen_batches")) for o in overrides)
    knobs = run_fipo(project, "knobs", "chunk_size=64", "--json")
    assert knobs.returncode == 0 and json.loads(knobs.stdout)["warnings"] == [
        "chunk_size=64 does nothing: fipo sums Future-KL with a recurrence, so the block size of the paper's chunked "
        "sum changes nothing (in the official loss it only changes the order of summation)"]


def test_every_verl_key_fipo_sets_names_the_fipo_key_that_sets_it():
    """The table a refused verl. key is answered from, held to what fipo's mapping emits."""
    from fipo_cli.experiment import config, recipes
    from fipo_cli.verl_adapter import overrides as verl_overrides
    from fipo_cli.verl_adapter.verl_keys import FIPO_KEY_OF

    for model in recipes.MODELS:
        for algo in recipes.ALGORITHMS:
            for device in ("cuda", "cpu"):
                experiment = config.build(config.read_experiment(recipes.recipe_path(model, algo)), {
                    "trainer.device": device, "trainer.sequence_parallel_size": 1,
                    "algorithm.reward_function": "fipo_cli.toy_task:compute_score", "model.max_position_embeddings": 64})
                lines = verl_overrides.experiment_overrides(experiment, experiment_name="e", checkpoint_dir=Path("/c"),
                                                            hydra_dir=Path("/h"), wandb=True, worker_env={})
                fixed = verl_overrides._cpu_settings(experiment) if device == "cpu" else {}
                paths = {line.split("=", 1)[0].lstrip("+") for line in lines} - {key.lstrip("+") for key in fixed}
                assert paths <= FIPO_KEY_OF.keys(), paths - FIPO_KEY_OF.keys()
                schema = set(config.known_keys())
                assert all(owner.split(" ", 1)[0] in schema or " " in owner for owner in FIPO_KEY_OF.values())
