"""``key=value`` command-line assignments: parsing and typing of the values."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from fipo_cli.core.errors import UsageError

#: ``verl.~KEY``: delete a verl key (Hydra's ``~KEY``), the one assignment without ``=``.
DELETE_PREFIX = "verl.~"


def parse_value(text: str) -> Any:
    """Type a value the way YAML does (``true``, ``null``, ``0.99``, ``[1, 2]``), plus ``1e-6``.

    Anything else stays a string.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_assignments(arguments: Iterable[str]) -> dict[str, Any]:
    """``["gamma=0.99", "future_kl_window=-1"]`` → ``{"gamma": 0.99, "future_kl_window": -1}``;
    ``verl.~KEY`` → ``{"verl.~KEY": None}``."""
    parsed: dict[str, Any] = {}
    for argument in arguments:
        key, sep, text = argument.partition("=")
        key = key.strip()
        if not sep and key.startswith(DELETE_PREFIX):  # Hydra's ~KEY deletes a key and takes no value
            parsed[key] = None
            continue
        if not sep or not key:
            raise UsageError(f"{argument!r} is not an assignment", hint="write KEY=VALUE, for example gamma=0.99")
        parsed[key] = parse_value(text)
    return parsed
