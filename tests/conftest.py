"""Shared fixtures. Heavy imports (torch, transformers) stay inside the fixtures that need them."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2 model of :mod:`tiny_model`, built once per test session."""
    pytest.importorskip("transformers")  # the core install has neither it nor torch
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))
