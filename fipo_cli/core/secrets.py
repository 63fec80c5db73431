"""Secrets in environments: which variables hold one, and masking their values.

A secret never reaches a file or a log: whatever fipo records of an environment goes through
:func:`mask_secrets`, and batch scripts and Ray jobs pass secrets by name only.
"""

from __future__ import annotations

from collections.abc import Mapping

SECRET_NAME_PARTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
# Listed by name as well, so that they stay masked whatever becomes of the patterns above.
SECRET_NAMES = frozenset({"WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"})
MASK = "***"


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name looks like it holds a secret."""
    upper = name.upper()
    return upper in SECRET_NAMES or any(part in upper for part in SECRET_NAME_PARTS)


def mask_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the value of every secret-looking variable replaced by ``***``.

    A run directory stores the environment only through this: a secret must never reach a
    file or a log.
    """
    return {name: MASK if is_secret_name(name) else value for name, value in env.items()}
