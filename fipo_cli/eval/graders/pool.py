"""Grading many samples in worker processes: each (sample, grader) call under a time limit the parent
enforces, a worker killed and replaced when it overruns or dies."""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from fipo_cli.core.errors import FipoError, UsageError
from fipo_cli.eval.graders.mathverify import MathVerifyGrader
from fipo_cli.eval.graders.verdict import (
    DEFAULT_TIME_LIMIT,
    STARTUP_LIMIT,
    TIMEOUT,
    Grader,
    Verdict,
    check_grading_options,
)

# --- many samples, in worker processes -----------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """A call that gave no result: ``"timeout"``, the exception as ``"Type: message"``, or a dead worker."""

    reason: str


def _worker_main(conn: Connection, graders: tuple[Grader, ...]) -> None:
    """A grading worker: warm up, say ``ready``, then answer ``(task, grader, method, args)``.

    Messages out: ``("ready",)``, ``("failed", message, hint)`` when warming up fails, and
    ``("result", task, value)`` (value: what ``grader.method(*args)`` returned, or
    :class:`Failed`). ``None`` in (or a closed pipe) ends the worker.
    """
    # Ctrl-C reaches the whole process group; the parent decides what happens to workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for grader in graders:
            grader.warm_up()
    except FipoError as error:
        conn.send(("failed", error.message, error.hint))
        return
    except Exception as error:
        conn.send(("failed", f"{type(error).__name__}: {error}", None))
        return
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        task, grader_index, method, args = message
        try:
            value = getattr(graders[grader_index], method)(*args)
        except Exception as error:
            value = Failed(f"{type(error).__name__}: {error}")
        conn.send(("result", task, value))


@dataclass
class _Worker:
    """One worker process and the parent's view of it."""

    process: multiprocessing.process.BaseProcess
    conn: Connection
    deadline: float  # monotonic: when the current task (or, before ready, the start-up) runs out
    ready: bool = False
    task: int | None = None


class _Pool:
    """Worker processes that the parent can kill and replace one at a time.

    concurrent.futures cannot kill one hung worker (only break the whole pool), hence this
    small pool: one pipe per worker, one task in flight per worker, deadlines kept here.
    ``spawn`` gives every worker a fresh interpreter: nothing of the parent's threads or
    locks is inherited, and it behaves the same on every platform.
    """

    def __init__(self, graders: tuple[Grader, ...], size: int) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._graders = graders
        self.workers = [self._start() for _ in range(size)]

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child_end, self._graders), name="fipo-grader", daemon=True
        )
        process.start()
        # Only the child holds its end now, so the parent sees EOF as soon as the child dies.
        child_end.close()
        return _Worker(process, parent_end, deadline=time.monotonic() + STARTUP_LIMIT)

    def replace(self, worker: _Worker) -> None:
        """Kill ``worker`` (hung, dead or not starting) and put a fresh one in its place."""
        self._kill(worker)
        self.workers[self.workers.index(worker)] = self._start()

    @staticmethod
    def _kill(worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join()
        worker.process.close()  # its sentinel fd: a long run may replace many workers
        worker.conn.close()

    def close(self) -> None:
        """Ask idle workers to exit, then kill whatever is left (busy, starting or slow to exit)."""
        asked = []
        for worker in self.workers:
            if worker.ready and worker.task is None:
                try:
                    worker.conn.send(None)
                    asked.append(worker)
                except OSError:
                    pass  # already gone
        for worker in asked:
            worker.process.join(timeout=1.0)
        for worker in self.workers:
            self._kill(worker)


@dataclass(frozen=True)
class _Call:
    """One call to run in a worker: ``graders[grader].method(*args)`` within ``limit`` seconds."""

    grader: int
    method: str
    args: tuple[Any, ...]
    limit: float


def _run_calls(
    graders: tuple[Grader, ...], calls: Sequence[_Call], workers: int, on_result: Callable[[int, Any], None]
) -> None:
    """Run ``calls`` in up to ``workers`` processes; ``on_result(index, value or Failed)`` per call.

    Past its limit a call's worker is killed and replaced (``Failed("timeout")``); a worker
    that dies fails its call (``Failed("worker died …")``). Neither ends the run.
    """
    tasks: deque[int] = deque(range(len(calls)))
    left = len(calls)

    def finish(task: int, value: Any) -> None:
        nonlocal left
        left -= 1
        on_result(task, value)

    pool = _Pool(graders, min(workers, len(calls))) if calls else None
    try:
        while pool is not None and left:
            for worker in pool.workers:
                if worker.ready and worker.task is None and tasks:
                    task = tasks.popleft()
                    call = calls[task]
                    try:
                        worker.conn.send((task, call.grader, call.method, call.args))
                    except OSError:  # it died while idle: not this task's fault, so retry it
                        tasks.appendleft(task)
                        pool.replace(worker)
                        continue
                    worker.task, worker.deadline = task, time.monotonic() + call.limit
            waits = [w for w in pool.workers if not w.ready or w.task is not None]
            timeout = max(0.0, min(w.deadline for w in waits) - time.monotonic())
            readable = set(wait([w.conn for w in waits], timeout))
            for worker in list(pool.workers):
                if worker.conn in readable:
                    _receive(pool, worker, finish)
            now = time.monotonic()
            for worker in list(pool.workers):
                if worker.deadline > now or (worker.ready and worker.task is None):
                    continue
                if not worker.ready:
                    raise FipoError(f"a grading worker did not start within {STARTUP_LIMIT:.0f} s")
                finish(worker.task, Failed(TIMEOUT))
                pool.replace(worker)
    finally:
        if pool is not None:
            pool.close()


def grade_samples(
    responses: Sequence[str],
    answers: Sequence[str],
    graders: Sequence[Grader],
    *,
    workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, list[Verdict]]:
    """Grade ``responses[i]`` against ``answers[i]`` with every grader, in worker processes.

    Each (sample, grader) call runs in a worker and may take ``time_limit`` seconds: past
    that the parent kills the worker, records ``Verdict(None, False, "timeout")`` and starts
    a replacement. A grader that raises gives ``error="Type: message"``; a worker that dies
    gives ``error="worker died …"``. Neither ends the run. ``on_progress(done, total)`` is
    called with 0 first and then whenever a sample has been graded by every grader.

    Returns ``{grader name: verdicts in input order}``. Raises UsageError for mismatched
    lengths or bad settings, FipoError when workers cannot start (e.g. math-verify missing).
    """
    if len(responses) != len(answers):
        raise UsageError(
            f"grade_samples: {len(responses)} responses but {len(answers)} answers; they pair up one to one"
        )
    check_grading_options(workers, time_limit)
    names = [grader.name for grader in graders]
    if not names or len(set(names)) != len(names):
        raise UsageError(f"graders {names}: give at least one grader, each at most once")
    graders = tuple(graders)
    total = len(responses)
    # Call t: sample t // G, grader t % G.
    calls = [
        _Call(grader, "grade", (responses[sample], answers[sample]), time_limit)
        for sample in range(total)
        for grader in range(len(graders))
    ]
    verdicts: list[Verdict | None] = [None] * len(calls)
    open_graders = [len(graders)] * total
    done = 0
    if on_progress is not None:
        on_progress(0, total)

    def finish(task: int, value: Any) -> None:
        nonlocal done
        verdicts[task] = Verdict(None, False, value.reason) if isinstance(value, Failed) else value
        sample = task // len(graders)
        open_graders[sample] -= 1
        if open_graders[sample] == 0:
            done += 1
            if on_progress is not None:
                on_progress(done, total)

    _run_calls(graders, calls, workers, finish)
    grouped: dict[str, list[Verdict]] = {name: [] for name in names}
    for task, verdict in enumerate(verdicts):
        grouped[names[task % len(graders)]].append(verdict)
    return grouped


def vote_classes(
    grader: MathVerifyGrader,
    problems: Sequence[Sequence[str]],
    *,
    workers: int = 1,
    time_limit: float = DEFAULT_TIME_LIMIT,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[list[int | None] | None]:
    """cons@n's equivalence classes of each problem's responses (see :meth:`MathVerifyGrader.vote_classes`).

    One call per problem, in worker processes, limited to ``time_limit`` seconds per
    response; a problem whose call fails or runs out of time gets None (its votes then go by
    the extracted text, as for dapo). ``on_progress(done, problems)`` as in :func:`grade_samples`.
    """
    check_grading_options(workers, time_limit)
    calls = [
        _Call(0, "vote_classes", (tuple(responses),), time_limit * max(1, len(responses))) for responses in problems
    ]
    classes: list[list[int | None] | None] = [None] * len(calls)
    done = 0
    if on_progress is not None:
        on_progress(0, len(calls))

    def finish(task: int, value: Any) -> None:
        nonlocal done
        classes[task] = None if isinstance(value, Failed) else value
        done += 1
        if on_progress is not None:
            on_progress(done, len(calls))

    _run_calls((grader,), calls, workers, finish)
    return classes


def _receive(pool: _Pool, worker: _Worker, finish: Callable[[int, Any], None]) -> None:
    """Handle one message (or the death) of ``worker``."""
    try:
        message = worker.conn.recv()
    except (EOFError, OSError):
        worker.process.join()
        if not worker.ready:
            raise FipoError(
                f"a grading worker exited with code {worker.process.exitcode} while starting"
            ) from None
        if worker.task is not None:
            finish(worker.task, Failed(f"worker died (exit code {worker.process.exitcode})"))
        pool.replace(worker)
        return
    if message[0] == "ready":
        worker.ready = True
    elif message[0] == "failed":
        raise FipoError(message[1], hint=message[2])
    else:
        _, task, value = message
        worker.task = None
        finish(task, value)
