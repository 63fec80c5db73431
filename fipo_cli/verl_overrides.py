"""The one mapping from fipo's settings to verl 0.9.1's hydra overrides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POLICY_LOSS = "actor_rollout_ref.actor.policy_loss"
FIPO_LOSS_MODE = "future_kl"


def hydra_value(value: Any) -> str:
    """A Python value written in hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if text and all(ch.isalnum() or ch in "_-./" for ch in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def policy_loss_overrides(knob_values: Mapping[str, Any]) -> list[str]:
    """Overrides selecting the ``future_kl`` loss with the given knobs (the others keep their defaults).

    The knobs need no ``+``: fipo's Hydra plugin adds them to verl's ``policy_loss`` section.
    """
    return [f"{POLICY_LOSS}.loss_mode={FIPO_LOSS_MODE}"] + [
        f"{POLICY_LOSS}.{name}={hydra_value(value)}" for name, value in knob_values.items()
    ]
