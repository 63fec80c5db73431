"""The lock file (through an evaluation directory's writer lock): one holder, a dead one taken over, another host's named."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from fipo_cli.core.errors import EXIT_USAGE, UsageError
from fipo_cli.eval.pipeline import writer_lock
from fipo_cli.runs.layout import EVAL_LOCK_FILE as LOCK_FILE


def take_lock(directory):
    """Take ``directory``'s writer lock, as a second writer would; granting it is the failure."""
    with writer_lock(directory):
        raise AssertionError(f"the writer lock of {directory} was granted")


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    directory = tmp_path / "eval"
    with writer_lock(directory):
        owner = json.loads((directory / LOCK_FILE).read_text())
        assert (owner["host"], owner["pid"]) == (socket.gethostname(), os.getpid())
        with pytest.raises(UsageError) as caught:
            take_lock(directory)
        assert f"process {os.getpid()} on {socket.gethostname()}" in caught.value.message
        assert caught.value.exit_code == EXIT_USAGE
    assert not (directory / LOCK_FILE).exists()
    with writer_lock(directory):  # free again
        assert json.loads((directory / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_dead_writers_lock_on_this_host_is_taken_over(tmp_path):
    directory = tmp_path / "eval"
    directory.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True,
                          text=True)
    (directory / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    with writer_lock(directory):
        assert json.loads((directory / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_another_hosts_lock_is_named_with_how_to_remove_it(tmp_path):
    directory = tmp_path / "eval"
    directory.mkdir()
    (directory / LOCK_FILE).write_text(json.dumps({"host": "node-17", "pid": 4242, "command": "fipo eval aime24"}))
    with pytest.raises(UsageError) as caught:
        take_lock(directory)
    assert "process 4242 on node-17 (fipo eval aime24" in caught.value.message
    assert str(directory / LOCK_FILE) in caught.value.hint


def test_a_directory_that_cannot_be_made_is_a_usage_error(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UsageError, match="cannot create the evaluation directory") as caught:
        take_lock(tmp_path / "a-file" / "eval")
    assert str(tmp_path / "a-file" / "eval") in caught.value.message
