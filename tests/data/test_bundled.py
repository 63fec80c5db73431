"""The benchmark sets that ship inside the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from fipo_cli.core.errors import EXIT_USAGE, UsageError
from fipo_cli.data import prepare as data_prepare
from fipo_cli.data.bundled import BENCHMARKS, bundled_file, load_bundled

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_bundled_benchmarks_ship_inside_the_package():
    for name in BENCHMARKS:
        path = bundled_file(name)
        assert Path(data_prepare.__file__).parent in path.parents
        if SHARED_DATA.is_dir():
            assert path.read_bytes() == (SHARED_DATA / f"{name}.jsonl").read_bytes()
    assert [len(load_bundled(name)) for name in BENCHMARKS] == [30, 30, 500]
    assert load_bundled("aime24")[0]["answer"] == "204"


def test_unknown_bundled_name_lists_the_known_ones():
    with pytest.raises(UsageError) as raised:
        bundled_file("aime23")
    assert "'aime23'" in str(raised.value)
    assert all(name in str(raised.value) for name in BENCHMARKS)
    assert raised.value.exit_code == EXIT_USAGE
