"""The run status record: round trips, missing and corrupt records named, run names, concurrent claims."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from fipo_cli.core.errors import FipoError
from fipo_cli.runs.status import RunStatus, create_run_dir, new_run_name, read_status, write_status

SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


NOW = datetime(2026, 11, 22, 1, 30, 0, tzinfo=timezone.utc)


def test_status_round_trip(tmp_path):
    status = RunStatus(
        state="succeeded",
        launcher="slurm",
        exit_code=0,
        started_at="2026-11-22T01:30:05+00:00",
        finished_at="2026-11-22T09:12:44+00:00",
        job_id="123456",
        wandb_run_id="abc123",
        resumed_from="20261121-220000",
    )
    write_status(tmp_path, status)
    assert read_status(tmp_path) == status
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "succeeded"

    local = RunStatus(state="created", launcher="local")
    write_status(tmp_path, local)
    assert read_status(tmp_path) == local
    assert local.job_id is None
    assert datetime.fromisoformat(local.created_at).utcoffset().total_seconds() == 0


def test_a_missing_status_is_a_fipo_error_naming_the_file(tmp_path):
    with pytest.raises(FipoError, match=re.escape(str(tmp_path / "status.json"))):
        read_status(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        '{"state": "running", "launcher": "lo',
        "[1, 2]",
        '{"state": "exploded", "launcher": "local", "created_at": "2026-11-22T01:30:00+00:00"}',
        '{"state": "running", "launcher": "local"}',
        '{"state": "failed", "launcher": "local", "created_at": "x", "exit_code": "1"}',
    ],
)
def test_a_corrupt_status_is_a_fipo_error_naming_the_file(tmp_path, content):
    (tmp_path / "status.json").write_text(content)
    with pytest.raises(FipoError, match=re.escape(str(tmp_path / "status.json"))):
        read_status(tmp_path)


def test_run_names_are_safe_sortable_and_unique(tmp_path):
    names = []
    for _ in range(4):
        name = new_run_name(tmp_path, NOW)
        (tmp_path / name).mkdir()
        names.append(name)
    assert names == ["20261122-013000", "20261122-013000-2", "20261122-013000-3", "20261122-013000-4"]
    assert all(SAFE_NAME.match(name) for name in names)
    assert sorted(names) == names
    assert new_run_name(tmp_path, NOW.replace(second=1)) > names[-1]
    assert SAFE_NAME.match(new_run_name(tmp_path))


def test_run_names_are_in_utc(tmp_path):
    tokyo = NOW.astimezone(timezone(timedelta(hours=9)))
    assert new_run_name(tmp_path, tokyo) == "20261122-013000"


def test_concurrent_run_directories_never_collide(tmp_path):
    with ThreadPoolExecutor(max_workers=8) as pool:
        run_dirs = list(pool.map(lambda _: create_run_dir(tmp_path / "runs", NOW), range(16)))
    assert len({run_dir.name for run_dir in run_dirs}) == 16
    assert all(run_dir.is_dir() and not any(run_dir.iterdir()) for run_dir in run_dirs)


def test_status_written_by_a_newer_fipo_with_extra_keys_still_reads(tmp_path):
    from fipo_cli.runs.layout import STATUS_FILE
    from fipo_cli.runs.status import RunStatus, read_status, write_status

    write_status(tmp_path, RunStatus(state="running", launcher="slurm", job_id="42"))
    record = json.loads((tmp_path / STATUS_FILE).read_text())
    record["array_index"] = 3
    (tmp_path / STATUS_FILE).write_text(json.dumps(record))
    status = read_status(tmp_path)
    assert (status.state, status.job_id) == ("running", "42")
