"""Hugging Face hub ids: the one test of whether a name can be a model or dataset repository on the hub."""

from __future__ import annotations

import re

# "org/name" or a bare "name", as the hub spells repository ids; it refuses ".." in them.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def is_hub_id(text: str) -> bool:
    """Whether ``text`` is shaped like a hub repository id (``ORG/NAME`` or ``NAME``)."""
    return bool(_HUB_ID.fullmatch(text)) and ".." not in text
