"""SLURM's time limits in every form, in hours."""

from __future__ import annotations

from fipo_cli.core.clock import time_limit_hours


def test_time_limits_in_every_slurm_form_convert_to_hours():
    assert time_limit_hours("90") == 1.5
    assert time_limit_hours("12:30:00") == 12.5
    assert time_limit_hours("2-06:00:00") == 54
    assert time_limit_hours(None) is None
