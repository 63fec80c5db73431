"""The experiment config: every problem reported at once, numbers that must be finite, the cluster profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from fipo_cli.core.errors import ConfigError
from fipo_cli.experiment import config

from fipo_run import run_fipo
from stand_in import stand_in_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """experiments/smoke from the one-GPU recipe, training with the stand-in (:mod:`stand_in`)."""
    return stand_in_project(tmp_path)


def test_the_cluster_profile_fills_what_the_experiment_leaves_open(tmp_path, monkeypatch):
    profile = tmp_path / "cluster.yaml"
    profile.write_text("partition: gpu\naccount: proj\ngpus_per_node: 4\nsetup: [module load cuda]\n")
    monkeypatch.setenv("FIPO_CLUSTER_CONFIG", str(profile))
    experiment = tmp_path / "fipo.yaml"
    experiment.write_text("name: e\nmodel:\n  path: Qwen/Qwen2.5-0.5B\ncluster:\n  account: mine\n")
    loaded = config.load(experiment, {"cluster.partition": "debug"})
    assert (loaded.cluster.partition, loaded.cluster.account, loaded.cluster.gpus_per_node) == ("debug", "mine", 4)
    assert loaded.cluster.setup == ["module load cuda"]

    profile.write_text("partiton: gpu\nnodes: 4\n")
    with pytest.raises(ConfigError) as error:
        config.load(experiment)
    assert "did you mean 'partition'" in str(error.value) and "'nodes' is not a cluster profile key" in str(error.value)


def runs(project: Path) -> list[Path]:
    runs_dir = project / "experiments" / "smoke" / "runs"
    return sorted(runs_dir.iterdir()) if runs_dir.exists() else []


def test_bad_overrides_report_every_problem_and_write_nothing(project):
    result = run_fipo(project, "train", "smoke", "gama=0.9", "n=many", "tau=-1", "gamma=1.5")
    assert result.returncode == 2
    assert "'gama' is not a known key; did you mean 'gamma'?" in result.stderr
    assert "rollout.n='many': expected an integer" in result.stderr
    assert "algorithm.decay_rate=-1" in result.stderr
    assert "algorithm.gamma=1.5: must lie in (0, 1]" in result.stderr
    assert runs(project) == []


def test_nan_infinity_and_huge_integers_are_refused_everywhere_naming_the_key(project):
    result = run_fipo(project, "train", "smoke", "lr=inf", "tau=1e400", "gamma=nan",
                  "max_response_length=99999999999999999999")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "trainer.lr=inf: must be a finite number, not NaN or ±infinity" in result.stderr
    assert "algorithm.decay_rate=inf: must be a finite number" in result.stderr
    assert "algorithm.gamma=nan: must be a finite number" in result.stderr
    assert ("data.max_response_length=99999999999999999999: out of range; integers must lie within "
            "±9223372036854775807 (64 bits)") in result.stderr
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    config_file.write_text(config_file.read_text().replace("  temperature: 1.0", "  temperature: .inf", 1))
    result = run_fipo(project, "train", "smoke")
    assert result.returncode == 2 and "rollout.temperature=inf: must be a finite number" in result.stderr
    config_file.write_text(config_file.read_text().replace("  temperature: .inf", "  temperature: 1.0", 1))
    result = run_fipo(project, "knobs", "tau=inf")
    assert result.returncode == 2 and "decay_rate=inf: must be a finite number" in result.stderr
    result = run_fipo(project, "sweep", "smoke", "lr=1e-6,inf", "--dry-run")
    assert result.returncode == 2 and "trainer.lr=inf: must be a finite number" in result.stderr
    result = run_fipo(project, "sweep", "smoke", "seed=range(0,99999999999999999999,1)", "--dry-run")
    assert result.returncode == 2 and "range(): seed=99999999999999999999: out of range" in result.stderr
    assert runs(project) == []


def test_an_unknown_yaml_key_points_at_the_schemas_name(project):
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    text = config_file.read_text()
    config_file.write_text(text.replace("trainer:\n", "trainer:\n  learning_rate: 2.0e-6\n", 1) + "tau: 16\n")
    result = run_fipo(project, "train", "smoke")
    assert result.returncode == 2
    assert "'trainer.learning_rate' is not a known key; did you mean 'trainer.lr'?" in result.stderr
    assert "'tau' is not a known key; did you mean 'algorithm.decay_rate'?" in result.stderr  # aliases: overrides only
    result = run_fipo(project, "train", "smoke", "algorithm.lr=1e-6", "trainer.n=8")
    assert "'algorithm.lr' is not a known key; did you mean 'trainer.lr'?" in result.stderr
    assert "'trainer.n' is not a known key; did you mean 'rollout.n'?" in result.stderr


def test_a_config_file_that_is_not_utf8_is_named_with_its_line(project):
    config_file = project / "experiments" / "smoke" / "fipo.yaml"
    config_file.write_bytes(config_file.read_bytes() + b"# caf\xe9\n")
    line = config_file.read_bytes().count(b"\n")
    for command in (["train", "smoke", "--dry-run"], ["doctor", "smoke"]):
        result = run_fipo(project, *command)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"experiments/smoke/fipo.yaml:{line}: not UTF-8 text (byte 0xe9" in result.stderr
