"""The parameter space of ``fipo sweep``: the axis grammar and its expansion into runs.

One command-line token is one axis, in the spirit of hydra's multirun::

    KEY=v                        one value, fixed for every run
    KEY=v1,v2,v3                 a list (choice(v1,v2,v3) is the same)
    KEY=range(start,stop[,step]) Python's range; floats too (start + i*step, to 12 significant digits)
    KEY=interval(low,high)       a uniform float in [low, high]; --strategy random only

KEY is an alias (``gamma``, ``tau``, ``lr`` …), a dotted schema key (``algorithm.gamma``) or any verl
key as ``verl.KEY`` (``verl.actor_rollout_ref.rollout.max_num_seqs``; ``verl.+KEY`` adds one).
Values are typed like ``KEY=VALUE`` overrides (:func:`fipo_cli.experiment.overrides.parse_value`), so
``16`` is an int, ``0.99`` a float and ``true`` a bool. A value in single or double quotes may
hold commas and parentheses and stays a string: ``tracking.tags='a,b',c``. Commas inside ``[...]`` or
``{...}`` do not split, so list values can be swept: ``data.val_files=[a,b],[c]``.

Every mistake is a :class:`~fipo_cli.core.errors.UsageError` that quotes the token and puts a caret
under the offending character. This module is pure: it reads no files and starts nothing.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fipo_cli.core.errors import UsageError, number_problem, unknown_key_problem
from fipo_cli.experiment import config
from fipo_cli.experiment.overrides import parse_value

GRAMMAR = (
    "write KEY=VALUES with VALUES one of: v | v1,v2,... | range(start,stop[,step]) | choice(a,b,...) | "
    "interval(low,high) (random only); quote values that hold commas or parentheses: 'a,b'"
)
FUNCTIONS = ("range", "choice", "interval")
_QUOTES = "'\""
_OPENERS = {"[": "]", "{": "}"}


@dataclass(frozen=True)
class Axis:
    """One swept key: its typed values in the order given, or an interval to draw from."""

    key: str  # as written: an alias or a dotted key
    values: tuple[Any, ...]  # () for an interval
    token: str  # the command-line token, for messages
    interval: tuple[float, float] | None = None


def _error(token: str, pos: int, what: str, hint: str = GRAMMAR) -> UsageError:
    # The token on its own line, indented by two, so the caret sits at column 2 + pos.
    return UsageError(f"sweep axis {token!r}: {what}\n  {token}\n  {' ' * pos}^", hint=hint)


def _require(axes: Sequence[Any]) -> None:
    if not axes:
        raise UsageError("nothing to sweep: give at least one KEY=VALUES", hint=GRAMMAR)


def _skip_spaces(token: str, i: int) -> int:
    while i < len(token) and token[i].isspace():
        i += 1
    return i


def _items(token: str, i: int, in_call: bool) -> tuple[list[tuple[Any, int, bool]], int]:
    """The comma-separated items from ``token[i:]`` as (value, position, quoted), and where they end.

    Outside a call the items run to the end of the token; inside one, to its closing ``)``,
    whose index is returned (``len(token)`` when it is missing: the caller reports that).
    """
    items: list[tuple[Any, int, bool]] = []
    while True:
        i = _skip_spaces(token, i)
        pos = i
        if i < len(token) and token[i] in _QUOTES:
            close = token.find(token[i], i + 1)
            if close < 0:
                raise _error(token, i, "unclosed quote")
            items.append((token[i + 1 : close], pos, True))
            i = _skip_spaces(token, close + 1)
            if i < len(token) and token[i] != "," and not (in_call and token[i] == ")"):
                raise _error(token, i, "text after the closing quote; quote the whole value")
        else:
            stack: list[tuple[str, int]] = []  # open brackets: commas inside them do not split
            while i < len(token):
                char = token[i]
                if not stack and (char == "," or (in_call and char == ")")):
                    break
                if char in _QUOTES:
                    raise _error(token, i, "a quote must enclose the whole value")
                if char == "(":
                    raise _error(token, i, "'(' inside a value: quote it, or make range/choice/interval the value")
                if char == ")":
                    raise _error(token, i, "unmatched ')'")
                if char in _OPENERS:
                    stack.append((char, i))
                elif stack and char == _OPENERS[stack[-1][0]]:
                    stack.pop()
                i += 1
            if stack:
                raise _error(token, stack[-1][1], f"unclosed {stack[-1][0]!r}")
            text = token[pos:i].strip()
            if not text:
                raise _error(token, pos, "empty value")
            items.append((parse_value(text), pos, False))
        if i >= len(token) or token[i] == ")":
            return items, i
        i += 1  # past the comma


def _number(token: str, item: tuple[Any, int, bool], function: str) -> int | float:
    value, pos, quoted = item
    if quoted or isinstance(value, bool) or not isinstance(value, int | float):
        raise _error(token, pos, f"{function}() takes numbers")
    out_of_range = number_problem(token.partition("=")[0], value)
    if out_of_range:
        raise _error(token, pos, f"{function}(): {out_of_range}")
    return value


def _range(token: str, args: list[tuple[Any, int, bool]], name_pos: int, close: int) -> tuple[Any, ...]:
    if len(args) not in (2, 3):
        pos = args[3][1] if len(args) > 3 else close
        raise _error(token, pos, f"range() takes 2 or 3 numbers (start, stop[, step]), got {len(args)}")
    start, stop, step = (*(_number(token, arg, "range") for arg in args), 1)[:3]
    if step == 0:
        raise _error(token, args[2][1], "range() step must not be 0")
    if all(isinstance(x, int) for x in (start, stop, step)):
        values = tuple(range(start, stop, step))
    else:
        # start + i*step rather than a running sum, rounded to 12 significant digits (not places: lr-sized steps
        # survive) so 0.1 steps give 0.3, not 0.30000000000000004; the count is rounded too, because
        # (0.4-0.1)/0.1 is 3.0000000000000004 and stop must stay exclusive.
        count = max(0, math.ceil(round((stop - start) / step, 9)))
        values = tuple(float(f"{start + i * step:.12g}") for i in range(count))
    if not values:
        raise _error(token, name_pos, f"range({start}, {stop}, {step}) is empty")
    return values


def _parse_axis(token: str) -> Axis:
    key, equals, _ = token.partition("=")
    if not equals:
        raise _error(token, len(token), "expected '=' (KEY=VALUES)")
    if not key.strip():
        raise _error(token, 0, "empty key")
    i = _skip_spaces(token, len(key) + 1)
    name_end = i
    while name_end < len(token) and (token[name_end].isalnum() or token[name_end] == "_"):
        name_end += 1
    if name_end > i and name_end < len(token) and token[name_end] == "(":
        name = token[i:name_end]
        if name not in FUNCTIONS:
            functions = ", ".join(FUNCTIONS)
            raise _error(token, i, f"unknown function {name!r}; the functions are {functions} (or quote the value)")
        args, close = _items(token, name_end + 1, in_call=True)
        if close >= len(token):
            raise _error(token, name_end, "unclosed '('")
        rest = _skip_spaces(token, close + 1)
        if rest < len(token):
            raise _error(token, rest, f"text after {name}(...): a function must be the whole value")
        if name == "interval":
            if len(args) != 2:
                raise _error(token, args[2][1] if len(args) > 2 else close, "interval() takes 2 numbers (low, high)")
            low, high = (float(_number(token, arg, "interval")) for arg in args)
            if low >= high:
                raise _error(token, args[1][1], f"interval() needs low < high, got {low:g} and {high:g}")
            return Axis(key, (), token, (low, high))
        if name == "range":
            return Axis(key, _range(token, args, i, close), token)
    else:
        args, _ = _items(token, len(key) + 1, in_call=False)
    values: list[Any] = []
    for value, pos, _ in args:
        # Equality, not hashing: values may be lists; 1 and 1.0 are one run of a float key.
        if any(value == seen and isinstance(value, bool) == isinstance(seen, bool) for seen in values):
            raise _error(token, pos, f"duplicate value {value!r}")
        values.append(value)
    return Axis(key, tuple(values), token)


def parse_axes(tokens: Sequence[str]) -> list[Axis]:
    """The axes of ``tokens`` in the order given; a UsageError for bad syntax, unknown or repeated keys."""
    _require(tokens)
    known = config.known_keys()
    axes: list[Axis] = []
    seen: dict[str, str] = {}  # dotted key -> the token that set it, so `gamma` and `algorithm.gamma` clash
    for token in tokens:
        axis = _parse_axis(token)
        dotted = config.canonical_key(axis.key)
        if dotted.startswith(config.VERL_PREFIX):
            match = config.VERL_KEY.match(dotted[len(config.VERL_PREFIX):])
            if not match or match.group(1) == "~":
                raise _error(token, 0, f"{axis.key!r} is not a verl key to set",
                             hint="sweep verl.KEY=VALUES or verl.+KEY=VALUES, KEY a dotted path of verl's config")
        elif dotted not in known:
            problem = unknown_key_problem(axis.key, (), "known key", config.suggest_key(axis.key))
            raise _error(token, 0, problem, hint=f"sweep an alias ({', '.join(config.KEY_ALIASES)}), a dotted key "
                                                 "or verl.KEY")
        if dotted in seen:
            raise _error(token, 0, f"{dotted} is already swept by {seen[dotted]!r}", hint="give each key once")
        seen[dotted] = token
        axes.append(axis)
    return axes


def space_size(axes: Sequence[Axis]) -> int | None:
    """The number of grid points: None when an axis is an interval, 0 when there are no axes."""
    if any(axis.interval is not None for axis in axes):
        return None
    return math.prod(len(axis.values) for axis in axes) if axes else 0


def grid(axes: Sequence[Axis]) -> list[dict[str, Any]]:
    """Every point of the cartesian product, first axis varying slowest; keys in token order."""
    _require(axes)
    for axis in axes:
        if axis.interval is not None:
            raise UsageError(
                f"sweep axis {axis.token!r}: interval() has no grid points",
                hint="use --strategy random --samples N, or list values / range() for a grid",
            )
    points = [dict(zip((a.key for a in axes), combo, strict=True)) for combo in itertools.product(*(a.values for a in axes))]
    if not points:  # cannot happen through parse_axes; never hand back an empty sweep silently
        raise UsageError("the sweep's product is empty", hint=GRAMMAR)
    return points


def random_points(axes: Sequence[Axis], samples: int, seed: int) -> list[dict[str, Any]]:
    """``samples`` points in draw order, the same for the same (axes, samples, seed).

    A discrete space is sampled without replacement, so the points are distinct: point k is
    ``grid(axes)[i_k]`` for ``i = Random(seed).sample(range(space_size(axes)), samples)``. With an
    interval axis every axis is drawn independently (discrete ones uniformly among their values).
    """
    _require(axes)
    if samples < 1:
        raise UsageError(f"--samples {samples}: must be at least 1")
    rng = random.Random(seed)  # our own generator: nothing else's draws change the sweep
    size = space_size(axes)
    if size is None:
        return [
            {a.key: rng.uniform(*a.interval) if a.interval else rng.choice(a.values) for a in axes}
            for _ in range(samples)
        ]
    if samples > size:
        raise UsageError(
            f"--samples {samples} is more than the {size} distinct points of the space",
            hint=f"use --strategy grid to run all {size}, or --samples {size} or fewer",
        )
    points = []
    for index in rng.sample(range(size), samples):  # indices into grid(): no replacement, no grid built
        point = {}
        for axis in reversed(axes):  # mixed radix, last axis fastest, as in grid()
            index, digit = divmod(index, len(axis.values))
            point[axis.key] = axis.values[digit]
        points.append({a.key: point[a.key] for a in axes})
    return points
