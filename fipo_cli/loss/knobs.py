"""FIPO's knobs: their names, defaults, validation and resolution (pure Python, no torch).

Two vocabularies set the same loss; both are accepted anywhere a knob is read (the verl
``policy_loss`` section, a plain dict, ``fipo knobs``):

fipo's names (used by recipes, ``fipo train`` aliases and sweeps)
    ``decay_rate``            τ, the half-life in tokens (default 32); γ = 2^(−1/τ)
    ``gamma``                 γ itself; when set it wins over ``decay_rate``
    ``future_kl_clip_low``    ε_f,low: influence weights are clipped at 1 − ε_f,low (default 0.0)
    ``future_kl_clip_high``   ε_f,high: influence weights are clipped at 1 + ε_f,high (default 0.2)
    ``safety_thresh``         ratio above which a negative-advantage token's weight is clamped
                              into [0.8, 1.0] after the bounds (default 10.0)

the official FIPO launcher's names (so its overrides run unchanged)
    ``future_kl_clip_ratio``      r: f ∈ [1 − r, 1 + r], or [1, 1 + r] with ``future_kl_clip_high_only``
                                  true, as in the official loss; r = 0 switches influence clipping
                                  off (f = min(exp(FutureKL), 10)). Cannot be combined with the
                                  ``future_kl_clip_low/high`` pair.
    ``future_kl_clip_high_only``  see above; only meaningful together with ``future_kl_clip_ratio``
    ``chunk_size``                block size of the paper's O(L²) chunked sum; accepted and
                                  validated, unused (the recurrence here needs no chunks, and the
                                  official loss's result does not depend on it either)

fipo's extensions under the official launcher's names: the official loss accepts these three and
ignores them; fipo gives them a meaning, and warns when one is set to anything but its default
(:func:`extension_warnings`)
    ``future_kl_start``           ``include_current`` (default: the sum starts at token t) or
                                  ``exclude_current`` (it starts at t + 1, same discount γ^(k−t))
    ``future_kl_window``          −1 (default): no hard window; W ≥ 1: only the W tokens from the
                                  start position on are summed
    ``future_kl_average``         false (default); true divides the discounted sum by the
                                  discounted count of the tokens it summed (a discounted mean)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fipo_cli.core.errors import ConfigError, number_problem, unknown_key_problem

INCLUDE_CURRENT = "include_current"
EXCLUDE_CURRENT = "exclude_current"
START_MODES = (INCLUDE_CURRENT, EXCLUDE_CURRENT)

#: Upper cap of the influence weight when influence clipping is off (official code).
NO_CLIP_CAP = 10.0

#: Every knob with its default. ``None`` means "not set" (its effect is described above).
KNOB_DEFAULTS: dict[str, Any] = {
    "decay_rate": 32.0,
    "gamma": None,
    "future_kl_clip_low": None,
    "future_kl_clip_high": None,
    "safety_thresh": 10.0,
    "future_kl_clip_ratio": None,
    "future_kl_clip_high_only": None,
    "future_kl_start": INCLUDE_CURRENT,
    "future_kl_window": -1,
    "future_kl_average": False,
    "chunk_size": 128,
}
#: Short names accepted on the command line (and by ``fipo train``/``fipo sweep``).
ALIASES: dict[str, str] = {
    "tau": "decay_rate",
    "eps_f_low": "future_kl_clip_low",
    "eps_f_high": "future_kl_clip_high",
}
DEFAULT_CLIP_LOW = 0.0
DEFAULT_CLIP_HIGH = 0.2


def gamma_from_decay_rate(decay_rate: float) -> float:
    """γ = 2^(−1/τ): τ is the half-life of the discount, in tokens."""
    return 2.0 ** (-1.0 / decay_rate)


def decay_rate_from_gamma(gamma: float) -> float:
    """τ = −1/log2(γ); infinite for γ = 1 (no decay)."""
    return math.inf if gamma == 1.0 else -1.0 / math.log2(gamma)


@dataclass(frozen=True)
class FutureKLSettings:
    """The resolved, validated knobs the loss runs with.

    ``clip_low``/``clip_high`` are the influence-weight bounds themselves (not ε); in the
    no-clip mode they are 0 and :data:`NO_CLIP_CAP` and ``clipped`` is false.
    ``window`` is ``None`` for no hard window.
    """

    gamma: float = gamma_from_decay_rate(32.0)
    clip_low: float = 1.0 - DEFAULT_CLIP_LOW
    clip_high: float = 1.0 + DEFAULT_CLIP_HIGH
    clipped: bool = True
    safety_thresh: float = 10.0
    include_current: bool = True
    window: int | None = None
    average: bool = False


def _number(problems: list[str], name: str, value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{name}={value!r}: expected a number")
        return None
    out_of_range = number_problem(name, value)
    if out_of_range:
        problems.append(out_of_range)
        return None
    return float(value)


def _integer(problems: list[str], name: str, value: Any) -> int | None:
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
        problems.append(f"{name}={value!r}: expected an integer")
        return None
    out_of_range = number_problem(name, int(value))
    if out_of_range:
        problems.append(out_of_range)
        return None
    return int(value)


def _boolean(problems: list[str], name: str, value: Any) -> bool | None:
    if not isinstance(value, bool):
        problems.append(f"{name}={value!r}: expected true or false")
        return None
    return value


def canonical_assignments(assignments: Mapping[str, Any]) -> dict[str, Any]:
    """Knob assignments from a user (aliases allowed) under their canonical names.

    Raises a ConfigError naming every unknown key (with the closest known name) and every
    knob given twice (by its name and by its alias).
    """
    problems: list[str] = []
    canonical: dict[str, Any] = {}
    for key, value in assignments.items():
        name = ALIASES.get(key, key)
        if name not in KNOB_DEFAULTS:
            problems.append(unknown_key_problem(key, [*KNOB_DEFAULTS, *ALIASES], "FIPO knob"))
        elif name in canonical:
            problems.append(f"{name} is set twice ({key!r} is its alias or its name)")
        else:
            canonical[name] = value
    if problems:
        raise ConfigError(problems, hint=f"FIPO knobs: {', '.join(KNOB_DEFAULTS)}; aliases: {', '.join(ALIASES)}")
    return canonical


def knob_values(source: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Read every knob from a mapping-like object (dict, DictConfig, verl dataclass).

    Missing knobs take their defaults; other keys are ignored.
    """
    getter = source.get if hasattr(source, "get") else (lambda key, default: getattr(source, key, default))
    return {name: getter(name, default) for name, default in KNOB_DEFAULTS.items()}


def resolve(source: Mapping[str, Any] | Any) -> FutureKLSettings:
    """Validate the knobs in ``source`` and resolve them into :class:`FutureKLSettings`.

    Every problem is collected and raised at once as a :class:`ConfigError` whose lines
    name the knob, the bad value and what is allowed.
    """
    values = knob_values(source)
    problems: list[str] = []

    decay_rate = _number(problems, "decay_rate", values["decay_rate"])
    if decay_rate is not None and not decay_rate > 0:
        problems.append(f"decay_rate={values['decay_rate']!r}: the half-life τ must be > 0 (tokens)")
    gamma: float | None = None
    if values["gamma"] is not None:
        gamma = _number(problems, "gamma", values["gamma"])
        if gamma is not None and not 0.0 < gamma <= 1.0:
            problems.append(f"gamma={values['gamma']!r}: must lie in (0, 1]")
            gamma = None
    elif decay_rate is not None and decay_rate > 0:
        gamma = gamma_from_decay_rate(decay_rate)

    clip_low, clip_high, clipped = _resolve_clip(problems, values)

    safety = _number(problems, "safety_thresh", values["safety_thresh"])
    if safety is not None and not safety > 0:
        problems.append(f"safety_thresh={values['safety_thresh']!r}: the ratio threshold must be > 0")

    start = values["future_kl_start"]
    if start not in START_MODES:
        problems.append(f"future_kl_start={start!r}: allowed values are {', '.join(START_MODES)}")

    window = _integer(problems, "future_kl_window", values["future_kl_window"])
    if window is not None and (window == 0 or window < -1):
        problems.append(f"future_kl_window={values['future_kl_window']!r}: use -1 for no window or a window ≥ 1 token")

    average = _boolean(problems, "future_kl_average", values["future_kl_average"])

    chunk_size = _integer(problems, "chunk_size", values["chunk_size"])
    if chunk_size is not None and chunk_size < 1:
        problems.append(f"chunk_size={values['chunk_size']!r}: must be a positive integer")

    if problems:
        raise ConfigError(problems, hint="see `fipo knobs --help` for every FIPO knob and what it accepts")
    assert gamma is not None and safety is not None and window is not None and average is not None
    return FutureKLSettings(
        gamma=gamma,
        clip_low=clip_low,
        clip_high=clip_high,
        clipped=clipped,
        safety_thresh=safety,
        include_current=start == INCLUDE_CURRENT,
        window=None if window == -1 else window,
        average=average,
    )


def _resolve_clip(problems: list[str], values: dict[str, Any]) -> tuple[float, float, bool]:
    """Influence-weight bounds (lower, upper, clipped?) from either vocabulary."""
    ratio, high_only = values["future_kl_clip_ratio"], values["future_kl_clip_high_only"]
    low, high = values["future_kl_clip_low"], values["future_kl_clip_high"]
    if ratio is None:
        if high_only is not None:
            problems.append(
                f"future_kl_clip_high_only={high_only!r}: only applies together with future_kl_clip_ratio; "
                "set future_kl_clip_ratio, or use future_kl_clip_low/future_kl_clip_high"
            )
        eps_low = _epsilon(problems, "future_kl_clip_low", DEFAULT_CLIP_LOW if low is None else low)
        eps_high = _epsilon(problems, "future_kl_clip_high", DEFAULT_CLIP_HIGH if high is None else high)
        if eps_low is not None and eps_low >= 1.0:
            problems.append(f"future_kl_clip_low={low!r}: must be < 1 (the lower bound 1 − ε_f,low must stay > 0)")
        return 1.0 - (eps_low or 0.0), 1.0 + (eps_high or 0.0), True

    if low is not None or high is not None:
        problems.append(
            "future_kl_clip_ratio is set together with future_kl_clip_low/future_kl_clip_high: "
            "use one vocabulary, not both"
        )
    r = _epsilon(problems, "future_kl_clip_ratio", ratio)
    only_high = False if high_only is None else _boolean(problems, "future_kl_clip_high_only", high_only)
    if r is None:
        return 1.0, 1.0, True
    if r == 0.0:
        return 0.0, NO_CLIP_CAP, False
    if not only_high and r >= 1.0:
        problems.append(f"future_kl_clip_ratio={ratio!r}: must be < 1 when future_kl_clip_high_only is false")
    return (1.0 if only_high else 1.0 - r), 1.0 + r, True


def _epsilon(problems: list[str], name: str, value: Any) -> float | None:
    eps = _number(problems, name, value)
    if eps is not None and eps < 0:
        problems.append(f"{name}={value!r}: must be ≥ 0")
        return None
    return eps


#: The knobs the official loss accepts and ignores, which fipo gives a meaning (see the module's doc).
EXTENSIONS = ("future_kl_start", "future_kl_window", "future_kl_average")


def extension_warnings(values: Mapping[str, Any]) -> list[str]:
    """One warning per knob of :data:`EXTENSIONS` set to a value other than its default.

    ``values`` uses canonical knob names; knobs it lacks are at their defaults.
    """
    return [
        f"{name}={values[name]!r} changes fipo's loss, but the official FIPO loss ignores {name}: "
        "results will differ from a run of the official code with the same settings"
        for name in EXTENSIONS
        if name in values and values[name] != KNOB_DEFAULTS[name]
    ]


#: Knobs accepted (the official launcher sets them) that change nothing in fipo's loss, and why.
INERT = {
    "chunk_size": "fipo sums Future-KL with a recurrence, so the block size of the paper's chunked sum changes "
                  "nothing (in the official loss it only changes the order of summation)",
}


def inert_warnings(values: Mapping[str, Any]) -> list[str]:
    """One warning per knob of :data:`INERT` in ``values`` (canonical names)."""
    return [f"{name}={values[name]!r} does nothing: {why}" for name, why in INERT.items() if name in values]


def summary(settings: FutureKLSettings) -> dict[str, Any]:
    """The resolved knobs as plain values, for ``fipo knobs`` and its ``--json`` (τ is None for γ = 1)."""
    return {
        "gamma": settings.gamma,
        "decay_rate": None if settings.gamma == 1.0 else float(f"{decay_rate_from_gamma(settings.gamma):.10g}"),
        "influence_weight_low": settings.clip_low,
        "influence_weight_high": settings.clip_high,
        "influence_clipping": settings.clipped,
        "safety_thresh": settings.safety_thresh,
        "future_kl_start": INCLUDE_CURRENT if settings.include_current else EXCLUDE_CURRENT,
        "future_kl_window": settings.window,
        "future_kl_average": settings.average,
    }
