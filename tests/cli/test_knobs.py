"""`fipo knobs`: both vocabularies resolve, every bad knob is named at once, exit code 2."""

from __future__ import annotations

import json

import pytest

from fipo_run import run_fipo


def test_knobs_json_resolves_official_names(tmp_path):
    result = run_fipo(tmp_path, "knobs", "future_kl_clip_ratio=0.2", "future_kl_clip_high_only=false", "tau=16", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["settings"]["influence_weight_low"] == pytest.approx(0.8)
    assert payload["settings"]["gamma"] == pytest.approx(2 ** (-1 / 16))
    assert payload["overrides"] == [
        "actor_rollout_ref.actor.policy_loss.loss_mode=future_kl",
        "actor_rollout_ref.actor.policy_loss.future_kl_clip_ratio=0.2",
        "actor_rollout_ref.actor.policy_loss.future_kl_clip_high_only=false",
        "actor_rollout_ref.actor.policy_loss.decay_rate=16",
    ]


def test_bad_knobs_exit_2_with_every_problem_and_no_traceback(tmp_path):
    result = run_fipo(tmp_path, "knobs", "gamma=1.5", "future_kl_window=0", "eps_f_low=-0.1")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "gamma=1.5: must lie in (0, 1]" in result.stderr
    assert "future_kl_window=0" in result.stderr
    assert "future_kl_clip_low=-0.1: must be ≥ 0" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_knob_suggests_the_closest_name(tmp_path):
    result = run_fipo(tmp_path, "knobs", "decay_rat=3")
    assert result.returncode == 2
    assert "'decay_rat' is not a FIPO knob; did you mean 'decay_rate'?" in result.stderr
