"""Whether a SLURM cluster answers here: tests that submit real jobs skip without one, or fail in CI.

CI (`.ci/run`) starts a one-node cluster and sets FIPO_REQUIRE_SLURM=1, so that a broken
set-up fails the run instead of silently skipping the launcher's tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def require_slurm() -> None:
    """Skip (or, under FIPO_REQUIRE_SLURM=1, fail) unless sbatch exists and slurmctld answers."""
    if shutil.which("sbatch") is None:
        reason = "SLURM's client tools (sbatch) are not installed; .ci/slurm-up.sh installs and starts a cluster"
    else:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
        if "is UP" in ping.stdout:
            return
        reason = f"no SLURM controller answers `scontrol ping` (SLURM_CONF={os.environ.get('SLURM_CONF')})"
    if os.environ.get("FIPO_REQUIRE_SLURM") == "1":
        pytest.fail(f"FIPO_REQUIRE_SLURM=1 but {reason}")
    pytest.skip(reason)
