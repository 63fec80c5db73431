"""Wait, inside a SLURM job, until every node of the allocation has joined the Ray cluster.

``python -m fipo_cli.launch.ray_wait --address HOST:PORT --gpus-per-node G [--timeout S] NODE...``
exits 0 once Ray reports all nodes alive with G GPUs each, or 1 after the timeout with a
message that names the nodes that did not join (their ``ray start`` output is in the job log).
With ``--head-pid``, it gives up at once when that process (the head's ``srun``) has exited:
a head that failed to start (a port in use, a bad option) is not waited for; with ``--worker-pid
NODE=PID``, neither is a worker whose ``ray start`` exited. With ``--run-dir``,
a cluster that never came up is recorded in that run (``failed``, and why): ``fipo status`` says it.

:func:`lost_nodes` (``--lost-within S``) is the other question a job asks: which of its nodes left, after a
trainer failed.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fipo_cli.core.clock import utc_now
from fipo_cli.core.processes import pid_alive
from fipo_cli.core.text import plural
from fipo_cli.runs.status import read_status, write_status

_JOIN_POLL_S = 1.0


@dataclass(frozen=True)
class Joined:
    """The alive Ray nodes: their host names and GPUs."""

    gpus_by_host: dict[str, float]

    def missing(self, nodes: Sequence[str]) -> list[str]:
        """Nodes of the allocation with no alive Ray node; SLURM's node names may be short host names."""
        hosts = {host.split(".")[0] for host in self.gpus_by_host}
        return [node for node in nodes if node.split(".")[0] not in hosts]

    @property
    def gpus(self) -> float:
        return sum(self.gpus_by_host.values())


def _joined() -> Joined:
    """The alive nodes of the Ray cluster this process is connected to."""
    import ray

    gpus: dict[str, float] = {}
    for node in ray.nodes():
        if node.get("Alive"):
            host = node.get("NodeManagerHostname") or node.get("NodeManagerAddress", "?")
            gpus[host] = gpus.get(host, 0.0) + node.get("Resources", {}).get("GPU", 0.0)
    return Joined(gpus)


def _connect(address: str, deadline: float, head_pid: int | None) -> None:
    import ray

    # ray.init retries on its own for a while; a short timeout keeps the head check responsive.
    os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", "5")
    while True:
        if head_pid is not None and not pid_alive(head_pid):
            raise TimeoutError(f"the Ray head (process {head_pid}) exited before it answered at {address}; "
                               "its output is above in the job log")
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
            return
        except (ConnectionError, RuntimeError) as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Ray head answered at {address}: {error}") from error
            time.sleep(_JOIN_POLL_S)


def wait_for_cluster(
    address: str, nodes: Sequence[str], gpus_per_node: int, timeout_s: float, head_pid: int | None = None,
    worker_pids: Mapping[str, int] | None = None,
) -> str | None:
    """None once all ``nodes`` are in with their GPUs; otherwise, after ``timeout_s``, what is missing.

    ``worker_pids``: the process starting each worker node's Ray (its ``srun``); one that exited before
    its node joined (``ray start`` failed there) is named at once rather than waited for.
    """
    import ray

    deadline = time.monotonic() + timeout_s
    try:
        _connect(address, deadline, head_pid)
    except TimeoutError as error:
        return str(error)
    try:
        needed = gpus_per_node * len(nodes)
        while True:
            joined = _joined()
            missing = joined.missing(nodes)
            if not missing and joined.gpus >= needed:
                return None
            exited = [node for node in missing if node in (worker_pids or {}) and not pid_alive(worker_pids[node])]
            if exited:
                return (f"the Ray worker of {', '.join(exited)} exited before it joined (its `ray start` output is "
                        "above in the job log)")
            if time.monotonic() > deadline:
                have = ", ".join(f"{host} ({plural(gpus, 'GPU')})" for host, gpus in sorted(joined.gpus_by_host.items()))
                lacking = f"nodes that did not join: {', '.join(missing)}" if missing else f"{joined.gpus:g} of {needed} GPUs"
                return f"the Ray cluster is incomplete after {timeout_s:g} s: {lacking}; joined: {have or 'none'}"
            time.sleep(_JOIN_POLL_S)
    finally:
        ray.shutdown()


def lost_nodes(address: str, nodes: Sequence[str], settle_s: float,
               also_gone: Callable[[Sequence[str]], list[str]] = lambda nodes: []) -> list[str] | None:
    """The nodes of ``nodes`` that are no longer alive in the Ray cluster at ``address`` (or, by
    ``also_gone``, to their scheduler).

    Asked after a trainer failed: a node that died (power, network, its raylet killed) fails the
    trainer within seconds, while Ray declares the node dead only after its health checks fail
    (by default 5 checks 3 s apart) and SLURM only after it stops answering its pings. So this watches
    for up to ``settle_s`` seconds and returns as soon as a node is gone; [] when every node stayed
    alive that long, None when the cluster does not answer (its head is gone too: nothing to tell).
    """
    import ray

    deadline = time.monotonic() + settle_s
    host, _, port = address.rpartition(":")
    try:  # ray.init waits minutes for a head that is gone; a refused connection says it at once
        socket.create_connection((host, int(port)), timeout=5).close()
        _connect(address, time.monotonic() + min(settle_s, 30.0), None)
    except (OSError, ValueError, TimeoutError):
        return None
    try:
        while True:
            missing = _joined().missing(nodes)
            missing += [node for node in also_gone(nodes) if node not in missing]
            if missing or time.monotonic() > deadline:
                return missing
            time.sleep(_JOIN_POLL_S)
    finally:
        ray.shutdown()


def _record_failure(run_dir: Path, problem: str) -> None:
    """The run's job ends before its trainer starts: say why in its record, where ``fipo status`` shows it."""
    status = read_status(run_dir)
    status.state, status.exit_code, status.reason = "failed", 1, problem
    status.finished_at = utc_now()
    write_status(run_dir, status)


#: Exit codes of ``--lost-within``: every node stayed; some left (named on stdout); nothing answered.
STAYED, LEFT, UNKNOWN = 0, 3, 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fipo_cli.launch.ray_wait", description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--gpus-per-node", type=int)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--head-pid", type=int, help="give up when this process (the head's srun) has exited")
    parser.add_argument("--worker-pid", action="append", default=[], metavar="NODE=PID",
                        help="name NODE at once when this process (its worker's srun) exits before NODE joined")
    parser.add_argument("--run-dir", type=Path, help="record a cluster that never came up in this run (failed, and why)")
    parser.add_argument("--lost-within", type=float, metavar="S",
                        help="instead: print `lost: NODE...` and exit 3 if a node leaves within S seconds, 0 if none does")
    parser.add_argument("nodes", nargs="+")
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.lost_within is not None:
        from fipo_cli.launch.slurm import unresponsive_nodes  # inside a SLURM job, slurmctld's word counts too

        lost = lost_nodes(args.address, args.nodes, args.lost_within,
                          unresponsive_nodes if os.environ.get("SLURM_JOB_ID") else lambda nodes: [])
        if lost is None:
            return UNKNOWN
        if lost:
            print("lost:", *lost, flush=True)
        return LEFT if lost else STAYED
    if args.gpus_per_node is None:
        parser.error("--gpus-per-node is required to wait for the cluster")
    started = time.monotonic()
    workers = {node: int(pid) for node, _, pid in (item.partition("=") for item in args.worker_pid)}
    problem = wait_for_cluster(args.address, args.nodes, args.gpus_per_node, args.timeout, args.head_pid, workers)
    if problem:
        print(f"fipo: {problem}", file=sys.stderr)
        if args.run_dir is not None:
            _record_failure(args.run_dir, problem)
        return 1
    print(f"fipo: Ray cluster ready in {time.monotonic() - started:.1f} s: {plural(len(args.nodes), 'node')} × "
          f"{plural(args.gpus_per_node, 'GPU')} each at {args.address}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
