"""Problem sources: bad local files and an unreachable hub are named with what to do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fipo_cli.core.errors import EXIT_RUNTIME, UsageError
from fipo_cli.data.prepare import prepare

PREPARE_AND_REPORT = textwrap.dedent(
    """
    import json, sys
    from fipo_cli.data.prepare import prepare
    from fipo_cli.core.errors import FipoError
    try:
        prepare(sys.argv[1], validation=())
    except FipoError as error:
        print(json.dumps({"type": type(error).__name__, "message": error.message, "hint": error.hint,
                          "exit_code": error.exit_code}))
    """
)


@pytest.mark.parametrize(
    ("train", "expected"),
    [("no/such/file.jsonl", "no such file"), ("./missing", "no such file"), ("not a hub id!", "neither")],
)
def test_bad_local_sources_are_usage_errors(tmp_path, train, expected):
    with pytest.raises(UsageError, match=expected):
        prepare(tmp_path / "out", train=train)
    assert not (tmp_path / "out").exists()


def test_unsupported_file_format_is_a_usage_error(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("problem,answer\n1+1,2\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"--train .*train\.csv.*unsupported format '\.csv'"):
        prepare(tmp_path / "out", train=csv)


@pytest.mark.parametrize(
    "env",
    [
        {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        # Online, but nothing listens there: the probe fails at once instead of retrying downloads.
        {"HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},
    ],
    ids=["offline", "unreachable"],
)
def test_hub_out_of_reach_says_so_and_how_to_pass_a_local_file(tmp_path, env):
    # A fresh interpreter: the datasets library reads these variables once, at import.
    result = subprocess.run(
        [sys.executable, "-c", PREPARE_AND_REPORT, str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.stdout.strip(), result.stderr
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert error["type"] == "FipoError" and error["exit_code"] == EXIT_RUNTIME
    assert "'BytedTsinghua-SIA/DAPO-Math-17k'" in error["message"]
    assert "--train path/to/file.parquet" in error["hint"] and "--no-train" in error["hint"]
    assert not (tmp_path / "out").exists()
