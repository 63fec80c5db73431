"""FIPO knobs: both vocabularies resolve to the paper's settings; nonsense is named and refused."""

from __future__ import annotations

import json
import math

import pytest

from fipo_cli.core.errors import ConfigError
from fipo_cli.loss import knobs

from fipo_run import run_fipo

EXTENSION_VALUES = {"future_kl_start": "exclude_current", "future_kl_window": 8, "future_kl_average": True}


def test_defaults_are_the_papers_32b_recipe():
    resolved = knobs.resolve({})
    assert resolved.gamma == pytest.approx(2 ** (-1 / 32))
    assert (resolved.clip_low, resolved.clip_high, resolved.clipped) == (1.0, 1.2, True)
    assert resolved.safety_thresh == 10.0
    assert resolved.include_current and resolved.window is None and not resolved.average


@pytest.mark.parametrize(
    "gamma, tau", [(0.95, 13.513407), (0.99, 68.967563), (2 ** (-1 / 32), 32.0)]
)
def test_gamma_and_decay_rate_are_one_knob(gamma, tau):
    # FIPO.md: γ = 0.95 ⇔ τ ≈ 13.5; γ = 0.99 ⇔ τ ≈ 69.0; τ = 32 ⇔ γ ≈ 0.97857
    assert knobs.resolve({"decay_rate": tau}).gamma == pytest.approx(gamma, rel=1e-6)
    assert knobs.decay_rate_from_gamma(gamma) == pytest.approx(tau, rel=1e-6)
    assert knobs.resolve({"decay_rate": 5.0, "gamma": gamma}).gamma == gamma  # gamma wins


def test_gamma_one_means_no_decay():
    assert knobs.resolve({"gamma": 1.0}).gamma == 1.0
    assert math.isinf(knobs.decay_rate_from_gamma(1.0))
    assert knobs.summary(knobs.resolve({"gamma": 1.0}))["decay_rate"] is None  # valid JSON, no Infinity


@pytest.mark.parametrize(
    "official, bounds",
    [
        ({"future_kl_clip_ratio": 0.2, "future_kl_clip_high_only": True}, (1.0, 1.2, True)),
        # As in the official loss: without future_kl_clip_high_only the bounds are symmetric.
        ({"future_kl_clip_ratio": 0.2}, (0.8, 1.2, True)),
        ({"future_kl_clip_ratio": 0.2, "future_kl_clip_high_only": False}, (0.8, 1.2, True)),
        ({"future_kl_clip_ratio": 0.0}, (0.0, 10.0, False)),
    ],
)
def test_official_clip_names_map_to_bounds(official, bounds):
    resolved = knobs.resolve(official)
    assert (resolved.clip_low, resolved.clip_high, resolved.clipped) == pytest.approx(bounds)


def test_fipo_clip_names_map_to_bounds():
    resolved = knobs.resolve({"future_kl_clip_low": 0.2, "future_kl_clip_high": 0.2})
    assert (resolved.clip_low, resolved.clip_high) == pytest.approx((0.8, 1.2))


def test_official_launcher_values_resolve():
    resolved = knobs.resolve(
        {
            "decay_rate": 32.0, "chunk_size": 128, "future_kl_start": "include_current", "future_kl_window": -1,
            "future_kl_average": False, "future_kl_clip_ratio": 0.2, "future_kl_clip_high_only": True,
            "safety_thresh": 10.0,
        }
    )
    assert resolved == knobs.resolve({})


@pytest.mark.parametrize(
    "values, named",
    [
        ({"gamma": 0.0}, "gamma=0.0"),
        ({"gamma": 1.01}, "gamma=1.01"),
        ({"decay_rate": -3}, "decay_rate=-3"),
        ({"future_kl_clip_low": -0.1}, "future_kl_clip_low=-0.1"),
        ({"future_kl_clip_high": -0.5}, "future_kl_clip_high=-0.5"),
        ({"future_kl_clip_low": 1.0}, "future_kl_clip_low=1.0"),
        ({"future_kl_clip_ratio": -0.2}, "future_kl_clip_ratio=-0.2"),
        ({"future_kl_window": 0}, "future_kl_window=0"),
        ({"future_kl_window": -5}, "future_kl_window=-5"),
        ({"future_kl_start": "later"}, "future_kl_start='later'"),
        ({"safety_thresh": 0}, "safety_thresh=0"),
        ({"chunk_size": 0}, "chunk_size=0"),
        ({"gamma": "high"}, "gamma='high'"),
        ({"future_kl_average": "yes"}, "future_kl_average='yes'"),
        ({"future_kl_clip_high_only": True}, "only applies together with future_kl_clip_ratio"),
        ({"future_kl_clip_ratio": 0.2, "future_kl_clip_high": 0.3}, "use one vocabulary"),
    ],
)
def test_nonsense_is_refused_naming_the_knob(values, named):
    with pytest.raises(ConfigError) as caught:
        knobs.resolve(values)
    assert named in str(caught.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        knobs.resolve({"gamma": 2.0, "future_kl_window": 0, "future_kl_clip_low": -1, "safety_thresh": -1})
    assert len(caught.value.problems) == 4


def test_aliases_and_unknown_names():
    assert knobs.canonical_assignments({"tau": 16, "eps_f_low": 0.2, "eps_f_high": 0.1}) == {
        "decay_rate": 16, "future_kl_clip_low": 0.2, "future_kl_clip_high": 0.1,
    }
    with pytest.raises(ConfigError) as caught:
        knobs.canonical_assignments({"decay_rat": 3, "tau": 2, "decay_rate": 4})
    message = str(caught.value)
    assert "did you mean 'decay_rate'" in message and "decay_rate is set twice" in message


@pytest.mark.parametrize("name", EXTENSION_VALUES)
def test_a_changed_extension_knob_gets_one_warning_naming_it(name):
    warnings = knobs.extension_warnings({name: EXTENSION_VALUES[name], "decay_rate": 16.0})
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{name}={EXTENSION_VALUES[name]!r} ")
    assert "official FIPO loss ignores" in warnings[0]


def test_extension_knobs_at_their_defaults_give_no_warning():
    assert len(knobs.extension_warnings(EXTENSION_VALUES)) == 3
    assert knobs.extension_warnings({}) == []
    assert knobs.extension_warnings(knobs.knob_values({})) == []
    # The official launcher sets all three, to their defaults, and other knobs never warn.
    launcher = {"future_kl_start": "include_current", "future_kl_window": -1, "future_kl_average": False,
                "decay_rate": 8.0, "future_kl_clip_ratio": 0.0, "safety_thresh": 3.0, "chunk_size": 64}
    assert knobs.extension_warnings(launcher) == []


def test_fipo_knobs_prints_each_extension_warning_once(tmp_path):
    result = run_fipo(tmp_path, "knobs", "future_kl_window=8", "future_kl_average=true", "tau=16")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert warnings[0].startswith("warning: future_kl_window=8 ") and warnings[1].startswith("warning: future_kl_average=True ")
    assert "warning" not in result.stdout

    as_json = run_fipo(tmp_path, "knobs", "future_kl_start=exclude_current", "--json")
    assert as_json.returncode == 0, as_json.stderr
    payload = json.loads(as_json.stdout)  # stdout stays one JSON object
    assert payload["warnings"] == knobs.extension_warnings({"future_kl_start": "exclude_current"})
    assert [line for line in as_json.stderr.splitlines() if line.startswith("warning: ")] == [
        f"warning: {payload['warnings'][0]}"
    ]


def test_fipo_knobs_with_the_official_launchers_values_warns_about_nothing(tmp_path):
    result = run_fipo(tmp_path, "knobs", "future_kl_start=include_current", "future_kl_window=-1",
                      "future_kl_average=false", "future_kl_clip_ratio=0.2", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["warnings"] == []
    assert "warning" not in result.stderr
