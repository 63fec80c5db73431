"""The trainer as a subprocess of fipo: its output streamed to the terminal and its log, Ctrl-C forwarded.

Nothing here imports torch: ``fipo --help`` must stay fast, and a login node has no CUDA.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, TextIO

from fipo_cli.core.errors import FipoError

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Exit codes of a trainer stopped by Ctrl-C (SIGINT) or SIGTERM.
INTERRUPTED = (130, 143)
_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None

# How often the output loop wakes up, when the trainer is silent, to notice that it exited.
_POLL_INTERVAL_S = 0.2
# Processes the trainer left behind (a Ray worker, a data loader) can keep its output pipe
# open after it exited; past this many seconds fipo stops reading instead of waiting for them.
_DRAIN_AFTER_EXIT_S = 2.0
_READ_SIZE = 65536


def run_local(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path | None = None,
    on_signal: Callable[[signal.Signals], None] | None = None,
    output: Callable[[bytes], None] | None = None,
    tick: Callable[[], None] | None = None,
) -> int:
    """Run ``command`` to completion, streaming its output to the terminal and to ``log_path``.

    The command runs with exactly ``env`` as its environment (pass ``os.environ`` plus
    additions to inherit; a Python trainer also wants ``PYTHONUNBUFFERED=1``, or its output
    arrives in blocks). Its stdout and stderr are merged into one stream, which is written to
    ``sys.stdout`` as it arrives and appended, byte for byte, to ``log_path`` (created with its
    parents). Its stdin is ``/dev/null``: a run never waits for a keyboard. ``output`` takes the
    terminal's place (a view of the run: :mod:`fipo_cli.launch.watch`), called with each piece of
    output as it arrives and with ``b""`` at the end; ``tick`` is called every ``_POLL_INTERVAL_S``
    while the trainer runs, however much or little it prints.

    The command gets its own session and process group, so the terminal's Ctrl-C reaches
    fipo alone. fipo forwards it:

    - the first SIGINT or SIGTERM fipo receives is sent, as itself, to the command's whole
      process group (the trainer and everything it started), and fipo keeps streaming until
      the trainer exits: it may take a while to shut down cleanly;
    - any further SIGINT or SIGTERM sends SIGKILL to the group.

    The previous signal handlers are restored on return. Signals are forwarded only when this
    is called from the main thread, the only thread Python delivers signals to. ``on_signal``
    hears of each signal received (the local launcher records it in the run).

    Returns the command's exit code, or ``128 + N`` when it died of signal N (the shell's
    convention), so that fipo can exit with the trainer's code. Raises :class:`FipoError`
    when the command cannot be started.
    """
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, _SignalForwarder(on_signal) as forwarder:
        try:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise _start_error(command, cwd, exc) from exc
        with process:
            forwarder.attach(process.pid)
            try:
                _stream(process, log, output or _byte_writer(sys.stdout), tick or (lambda: None))
                returncode = process.wait()
            except BaseException:
                # fipo cannot go on (the log's disk is full, the terminal is gone): stop the
                # trainer rather than leave it running on the GPUs with nobody reading it.
                stop_group(process)
                raise
    return 128 - returncode if returncode < 0 else returncode


def _start_error(command: Sequence[str], cwd: Path | None, exc: OSError) -> FipoError:
    program = command[0]
    if cwd is not None and not Path(cwd).is_dir():
        return FipoError(f"cannot start {program!r}: its working directory {str(cwd)!r} is not a directory")
    return FipoError(
        f"cannot start {program!r}: {exc.strerror or exc}",
        hint=f"check that {program!r} is installed, executable and on the PATH given to the trainer",
    )


class _SignalForwarder:
    """Forwards fipo's SIGINT and SIGTERM to the trainer's process group while it runs."""

    def __init__(self, on_signal: Callable[[signal.Signals], None] | None = None) -> None:
        self._on_signal_heard = on_signal
        self._process_group: int | None = None
        self._signals_received = 0
        # A signal that came after the handlers were installed but before the trainer started.
        self._pending: int | None = None
        self._previous_handlers: dict[int, _Handler] = {}

    def __enter__(self) -> _SignalForwarder:
        if threading.current_thread() is threading.main_thread():
            for signum in FORWARDED_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous_handlers.items():
            # None means a handler installed outside Python, which cannot be reinstalled.
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)

    def attach(self, process_group: int) -> None:
        self._process_group = process_group
        if self._pending is not None:
            self._send(self._pending)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals_received += 1
        if self._on_signal_heard is not None:
            with contextlib.suppress(Exception):  # a record that cannot be written must not stop the forwarding
                self._on_signal_heard(signal.Signals(signum))
        to_send = signum if self._signals_received == 1 else signal.SIGKILL
        if self._process_group is None:
            self._pending = to_send
        else:
            self._send(to_send)

    def _send(self, signum: int) -> None:
        name = signal.Signals(signum).name
        try:
            os.killpg(self._process_group, signum)
        except ProcessLookupError:
            return  # the trainer and its children have already exited
        then = "" if signum == signal.SIGKILL else "; waiting for it to exit (Ctrl-C again kills it)"
        # The handler may interrupt a write to the same stream; the signal is already sent, so
        # a lost notice must not turn into an exception in the output loop.
        with contextlib.suppress(OSError, RuntimeError):
            print(f"\nfipo: sent {name} to the trainer's process group{then}", file=sys.stderr, flush=True)


def _stream(process: subprocess.Popen, log: BinaryIO, write_to_terminal: Callable[[bytes], None],
            tick: Callable[[], None]) -> None:
    """Copy the trainer's output to ``log`` and ``write_to_terminal`` until it is done, calling ``tick``
    every ``_POLL_INTERVAL_S``.

    It is done at end of file, or ``_DRAIN_AFTER_EXIT_S`` after the trainer exited if
    something it left behind still holds the pipe open. Output is copied in chunks as it
    arrives, so progress bars that redraw a line with ``\\r`` show live.
    """
    assert process.stdout is not None
    pipe = process.stdout.fileno()
    drain_deadline: float | None = None
    next_tick = time.monotonic()
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        while True:
            if time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + _POLL_INTERVAL_S
            if drain_deadline is None and process.poll() is not None:
                drain_deadline = time.monotonic() + _DRAIN_AFTER_EXIT_S
            if drain_deadline is None:
                timeout = _POLL_INTERVAL_S
            else:
                timeout = drain_deadline - time.monotonic()
                if timeout <= 0:
                    break
            if not selector.select(timeout):
                continue
            chunk = os.read(pipe, _READ_SIZE)
            if not chunk:
                break
            log.write(chunk)
            log.flush()
            write_to_terminal(chunk)
    write_to_terminal(b"")


def _byte_writer(terminal: TextIO) -> Callable[[bytes], None]:
    """A function that writes the trainer's bytes to ``terminal`` and flushes; ``b""`` ends.

    The bytes go through unchanged, as ``tee`` would pass them: decoding and re-encoding could
    fail on a terminal whose encoding cannot show a character, and fail the run with it. Only
    a text stream without a byte layer gets them decoded (invalid UTF-8 replaced).
    """
    binary = getattr(terminal, "buffer", None)
    if binary is not None:
        terminal.flush()  # what fipo printed before the trainer started comes first

        def write_bytes(chunk: bytes) -> None:
            binary.write(chunk)
            binary.flush()

        return write_bytes
    # A chunk can end inside a multi-byte character; the decoder holds it for the next one.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write_text(chunk: bytes) -> None:
        terminal.write(decoder.decode(chunk, final=not chunk))
        terminal.flush()

    return write_text


def stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group ``process`` leads, then SIGKILL it if ``process`` outlives ``grace_s``."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
