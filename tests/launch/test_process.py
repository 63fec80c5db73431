"""The trainer's subprocess, with real processes: streaming, the log, Ctrl-C forwarded to its process group."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fipo_cli.core.errors import FipoError
from fipo_cli.launch.process import run_local

# Generous limits that only keep a broken launcher from hanging the suite; nothing is timed.
HANG_TIMEOUT_S = 60


def write_script(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + HANG_TIMEOUT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


class VanishedTerminal(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.EIO, "the terminal is gone")


def launch_in_subprocess(tmp_path: Path, trainer: Path) -> subprocess.Popen:
    """Start fipo's launcher as its own process, as ``fipo train`` would run it."""
    launcher = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from fipo_cli.launch.process import run_local\n"
        f"sys.exit(run_local([sys.executable, {str(trainer)!r}, {str(tmp_path)!r}],"
        f" env=dict(os.environ), log_path=Path({str(tmp_path / 'train.log')!r})))\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", launcher], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(launcher: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = launcher.communicate(timeout=HANG_TIMEOUT_S)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    return launcher.returncode, out, err


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_streams_every_line_to_terminal_and_log_and_returns_the_exit_code(tmp_path, capfd):
    trainer = write_script(
        tmp_path / "trainer.py",
        """
        import sys
        for step in range(50):
            stream = sys.stdout if step % 2 == 0 else sys.stderr
            print(f"step {step} on {stream.name}", file=stream, flush=True)
        print("ünïcode ✓", flush=True)
        sys.exit(3)
        """,
    )
    log_path = tmp_path / "runs" / "run-1" / "logs" / "train.log"
    handlers_before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    code = run_local([sys.executable, str(trainer)], env=dict(os.environ), log_path=log_path, cwd=tmp_path)

    assert code == 3
    expected = [f"step {step} on {'<stdout>' if step % 2 == 0 else '<stderr>'}" for step in range(50)]
    expected.append("ünïcode ✓")
    assert log_path.read_text(encoding="utf-8").splitlines() == expected
    terminal = capfd.readouterr().out.splitlines()
    assert terminal == expected
    assert {signum: signal.getsignal(signum) for signum in handlers_before} == handlers_before


def test_log_is_appended_to(tmp_path, capfd):
    log_path = tmp_path / "train.log"
    log_path.write_text("earlier attempt\n")
    run_local([sys.executable, "-c", "print('second attempt')"], env=dict(os.environ), log_path=log_path)
    assert log_path.read_text().splitlines() == ["earlier attempt", "second attempt"]


def test_a_text_only_stdout_gets_decoded_output(tmp_path, monkeypatch):
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stdout", terminal)
    # "✓" arrives split across two writes, as a chunk boundary can split it.
    trainer = "import sys; out = sys.stdout.buffer; out.write(b'ok \\xe2\\x9c'); out.flush(); out.write(b'\\x93\\n')"
    run_local([sys.executable, "-c", trainer], env=dict(os.environ), log_path=tmp_path / "train.log")
    assert terminal.getvalue() == "ok ✓\n"
    assert (tmp_path / "train.log").read_bytes() == "ok ✓\n".encode()


def test_a_process_left_holding_the_output_does_not_keep_fipo_waiting(tmp_path, capfd):
    trainer = write_script(
        tmp_path / "trainer.py",
        """
        import subprocess, sys
        from pathlib import Path
        # Inherits the trainer's stdout and outlives it, as a stray worker can.
        straggler = subprocess.Popen(["sleep", "300"])
        Path(sys.argv[1]).write_text(str(straggler.pid))
        print("trainer: done", flush=True)
        """,
    )
    straggler_pid = tmp_path / "straggler.pid"
    try:
        code = run_local(
            [sys.executable, str(trainer), str(straggler_pid)], env=dict(os.environ), log_path=tmp_path / "train.log"
        )
        assert code == 0
        assert capfd.readouterr().out == "trainer: done\n"
    finally:
        os.kill(int(straggler_pid.read_text()), signal.SIGKILL)


def test_a_failing_terminal_stops_the_trainer_instead_of_orphaning_it(tmp_path, monkeypatch):
    trainer = write_script(
        tmp_path / "trainer.py",
        """
        import os, sys, time
        from pathlib import Path
        Path(sys.argv[1]).write_text(str(os.getpid()))
        print("trainer: started", flush=True)
        time.sleep(300)
        """,
    )
    trainer_pid = tmp_path / "trainer.pid"
    monkeypatch.setattr(sys, "stdout", VanishedTerminal())
    with pytest.raises(OSError, match="the terminal is gone"):
        run_local([sys.executable, str(trainer), str(trainer_pid)], env=dict(os.environ), log_path=tmp_path / "log")
    assert process_gone(int(trainer_pid.read_text()))


def test_ctrl_c_is_forwarded_to_the_whole_process_group(tmp_path):
    trainer = write_script(
        tmp_path / "trainer.py",
        """
        import os, signal, subprocess, sys, time
        from pathlib import Path

        work = Path(sys.argv[1])
        grandchild = subprocess.Popen(["sleep", "300"])
        (work / "grandchild.pid").write_text(str(grandchild.pid))

        def on_sigint(signum, frame):
            # The grandchild got the same SIGINT only if the whole group was signalled.
            grandchild.wait(timeout=60)
            (work / "got-sigint").write_text(str(grandchild.returncode))
            print("trainer: stopping on SIGINT", flush=True)
            os._exit(130)

        signal.signal(signal.SIGINT, on_sigint)
        print("trainer: ready", flush=True)
        (work / "ready").write_text("")
        while True:
            time.sleep(1)
        """,
    )
    launcher = launch_in_subprocess(tmp_path, trainer)
    wait_for(tmp_path / "ready")

    launcher.send_signal(signal.SIGINT)
    code, out, err = finish(launcher)

    assert code == 130, err
    assert (tmp_path / "got-sigint").read_text() == str(-signal.SIGINT)
    assert process_gone(int((tmp_path / "grandchild.pid").read_text()))
    assert out.splitlines() == ["trainer: ready", "trainer: stopping on SIGINT"]
    assert "sent SIGINT" in err
    assert (tmp_path / "train.log").read_text().splitlines() == out.splitlines()


def test_second_ctrl_c_kills_the_process_group(tmp_path):
    trainer = write_script(
        tmp_path / "trainer.py",
        """
        import signal, sys, time
        from pathlib import Path

        work = Path(sys.argv[1])
        # A trainer that takes its time to shut down.
        signal.signal(signal.SIGINT, lambda signum, frame: (work / "got-sigint").write_text(""))
        (work / "ready").write_text("")
        while True:
            time.sleep(1)
        """,
    )
    launcher = launch_in_subprocess(tmp_path, trainer)
    wait_for(tmp_path / "ready")

    launcher.send_signal(signal.SIGINT)
    wait_for(tmp_path / "got-sigint")
    launcher.send_signal(signal.SIGINT)
    code, _, err = finish(launcher)

    assert code == 128 + signal.SIGKILL, err
    assert "sent SIGKILL" in err


def test_a_trainer_killed_by_a_signal_returns_128_plus_the_signal(tmp_path):
    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    code = run_local([sys.executable, "-c", suicide], env=dict(os.environ), log_path=tmp_path / "train.log")
    assert code == 143


def test_a_missing_command_is_a_fipo_error_naming_it(tmp_path):
    with pytest.raises(FipoError) as raised:
        run_local(["fipo-no-such-trainer", "--x"], env=dict(os.environ), log_path=tmp_path / "train.log")
    assert "fipo-no-such-trainer" in raised.value.message
    assert raised.value.hint


def test_a_command_that_is_not_executable_is_a_fipo_error(tmp_path):
    script = write_script(tmp_path / "trainer.sh", "echo never\n")
    with pytest.raises(FipoError, match=r"trainer\.sh"):
        run_local([str(script)], env=dict(os.environ), log_path=tmp_path / "train.log")
