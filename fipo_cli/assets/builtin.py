"""Models and data that fipo builds on this machine instead of downloading: paths ``builtin:NAME/...``.

An experiment names them like any other path: ``model.path: builtin:tiny-qwen2``,
``data.train_files: [builtin:toy-addition/train.parquet]``. They resolve to directories under
fipo's cache (``$FIPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/fipo``, else ``~/.cache/fipo``), which a
run builds on first use (:func:`ensure`) into a temporary directory renamed into place, so a
half-built asset is never seen. Nothing here needs the network.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from fipo_cli.core.files import publish_directory, scratch_path

PREFIX = "builtin:"


def _tiny_qwen2(directory: Path) -> None:
    from fipo_cli.assets.tiny_model import build_tiny_model

    build_tiny_model(directory)


def _toy_addition(directory: Path) -> None:
    from fipo_cli.assets.toy_task import write_data

    write_data(directory)


def _tiny_reasoner(directory: Path) -> None:
    from fipo_cli.assets.tiny_reasoner import build_tiny_reasoner

    build_tiny_reasoner(directory)


def _binary_numbers(directory: Path) -> None:
    from fipo_cli.assets.binary_numbers import write_data

    write_data(directory)


#: Each asset: its builder and a version; a new version is built into a new directory.
ASSETS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "tiny-qwen2": ("v1", _tiny_qwen2),
    "toy-addition": ("v1", _toy_addition),
    "tiny-reasoner": ("v1", _tiny_reasoner),
    "binary-numbers": ("v1", _binary_numbers),
}
#: Assets whose build takes long enough to say so first: about how long, on 2 cores.
SLOW_BUILDS = {"tiny-reasoner": "a supervised warm start of about 2½ minutes of one core"}


def is_builtin(path: str) -> bool:
    return path.startswith(PREFIX)


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("FIPO_CACHE_DIR"):
        return Path(env["FIPO_CACHE_DIR"]).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fipo"


def _split(path: str) -> tuple[str, str]:
    """``builtin:NAME/REST`` → (NAME, REST)."""
    name, _, rest = path[len(PREFIX):].partition("/")
    return name, rest


def problem(path: str) -> str | None:
    """Why ``path`` names no built-in asset, or None when it is fine (or not ``builtin:`` at all)."""
    if not is_builtin(path):
        return None
    name, _ = _split(path)
    if name not in ASSETS:
        return f"{path!r}: no built-in asset {name!r}; fipo builds {', '.join(PREFIX + known for known in ASSETS)}"
    return None


def _asset_dir(name: str, env: Mapping[str, str] | None) -> Path:
    version, _ = ASSETS[name]
    return cache_dir(env) / "builtin" / f"{name}-{version}"


def resolve(path: str, env: Mapping[str, str] | None = None) -> str:
    """The file system path of ``path``: a ``builtin:`` path's place in the cache, any other path unchanged."""
    if not is_builtin(path):
        return path
    name, rest = _split(path)
    directory = _asset_dir(name, env)
    return str(directory / rest if rest else directory)


def ensure(paths: Iterable[str], env: Mapping[str, str] | None = None,
           announce: Callable[[str], None] | None = None) -> list[Path]:
    """Build the built-in assets ``paths`` name that are not in the cache yet; returns the ones built.

    ``announce`` gets a line before each build that takes a while (:data:`SLOW_BUILDS`)."""
    built = []
    for name in dict.fromkeys(_split(path)[0] for path in paths if is_builtin(path)):
        target = _asset_dir(name, env)
        if target.is_dir():
            continue
        if announce is not None and name in SLOW_BUILDS:
            announce(f"building {PREFIX}{name} into {target}, once: {SLOW_BUILDS[name]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = scratch_path(target)
        try:
            ASSETS[name][1](scratch)
            publish_directory(scratch, target)  # another run's copy may land first: then it is kept
            built.append(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return built
