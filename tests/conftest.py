"""Shared fixtures, and the markers that gate tests on the pieces they need (:mod:`pieces`).

Heavy imports (torch, transformers) stay inside the fixtures that need them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import pieces


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2 model of :mod:`tiny_model`, built once per test session."""
    pytest.importorskip("transformers")  # the core install has neither it nor torch
    from fipo_cli.assets.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def small_reasoner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The length lab's warm start (:mod:`fipo_cli.assets.tiny_reasoner`) with small settings, built
    once per test session: seconds instead of minutes, enough to learn both shapes of answer."""
    pytest.importorskip("transformers")
    from fipo_cli.assets.tiny_reasoner import SMALL, build_tiny_reasoner

    return build_tiny_reasoner(tmp_path_factory.mktemp("small-reasoner"), SMALL)


@pytest.fixture(scope="session")
def checkpointed_run(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with verl FSDP checkpoints at steps 2 and 4, trained once per session (:mod:`checkpointed`)."""
    pieces.require("verl")
    from checkpointed import train_checkpoints

    return train_checkpoints(tmp_path_factory.mktemp("project"), tiny_model)


@pytest.fixture
def tiny_run_records() -> list[dict]:
    """The records of a real tiny run's metrics file (:data:`tiny_run.METRICS`): ``{"step": N, "data": {...}}`` each."""
    import tiny_run

    return tiny_run.records()


@pytest.fixture(autouse=True)
def no_user_cluster_profile(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own ~/.config/fipo/cluster.yaml out of every test."""
    monkeypatch.setenv("FIPO_CLUSTER_CONFIG", str(tmp_path_factory.getbasetemp() / "no-cluster-profile.yaml"))


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """W&B offline with every file it writes under ``tmp_path/wandb-home``; yields that folder.

    wandb reads the environment once per process, into a singleton that ``wandb.teardown()``
    drops: each test starts from its own environment.
    """
    wandb = pytest.importorskip("wandb")  # the core install has no wandb; verl (the `train` extra) brings it
    wandb.teardown()
    for name in list(os.environ):
        if name.startswith("WANDB_"):
            monkeypatch.delenv(name)
    home = tmp_path / "wandb-home"
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(name, str(home))
    monkeypatch.setenv("WANDB_MODE", "offline")
    yield home
    wandb.teardown()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``verl``, ``vllm``, ``ray``, ``slurm``, ``multinode`` or ``training`` needs that piece
    (see :mod:`pieces`)."""
    for piece in pieces.CHECKS:
        if item.get_closest_marker(piece) is not None:
            pieces.require(piece)
