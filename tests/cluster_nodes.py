"""The nodes of the two-node cluster (.ci/slurm-up.sh), seen from outside them, as a test sees them.

Node ``nI`` is the network namespace ``fipo-nI`` with the address 198.18.7.I. Which node a process
runs on is read from the process itself: ``ip netns pids`` lists the processes whose
``/proc/PID/ns/net`` is the namespace's. Its title (``ray::WorkerDict``, ``ray::vLLMHttpServer``) and
environment (verl gives each FSDP worker ``RANK`` and ``WORLD_SIZE``) come from ``/proc`` too:
nothing here takes fipo's or verl's word for where something ran.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

NODES = ("n1", "n2")
SUBNET = "198.18.7"
REPO = Path(__file__).resolve().parents[1]


def namespace(node: str) -> str:
    return f"fipo-{node}"


def address(node: str) -> str:
    return f"{SUBNET}.{node.removeprefix('n')}"


def cluster_dir() -> Path:
    """The cluster's directory (its slurm.conf, hosts file, logs), from SLURM_CONF."""
    return Path(os.environ["SLURM_CONF"]).parent.parent


def pids_on(node: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", namespace(node)], capture_output=True, text=True, check=True).stdout
    return [int(pid) for pid in out.split()]


@dataclass(frozen=True)
class Seen:
    """A process as /proc showed it: on which node, its title, and the variables verl sets its workers."""

    node: str
    pid: int
    title: str
    rank: str | None
    world_size: str | None


def processes_on(node: str) -> list[Seen]:
    seen = []
    for pid in pids_on(node):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # it exited meanwhile
            continue
        env = dict(item.split("=", 1) for item in environ if "=" in item)
        seen.append(Seen(node, pid, title, env.get("RANK"), env.get("WORLD_SIZE")))
    return seen


class Sampler:
    """Samples every node's processes once a second, in a thread, while a job runs; :meth:`next_attempt`
    files what follows under the job's next attempt (after a requeue)."""

    def __init__(self, period_s: float = 1.0) -> None:
        self.attempts: list[set[tuple[str, str, str | None, str | None]]] = [set()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period_s,), daemon=True)

    @property
    def seen(self) -> set[tuple[str, str, str | None, str | None]]:
        """(node, title, RANK, WORLD_SIZE) of every process seen in the current attempt."""
        return self.attempts[-1]

    def next_attempt(self) -> None:
        self.attempts.append(set())

    def _run(self, period_s: float) -> None:
        while not self._stop.is_set():
            for node in NODES:
                self.attempts[-1] |= {(p.node, p.title, p.rank, p.world_size) for p in processes_on(node)}
            self._stop.wait(period_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def titled(self, prefix: str, attempt: int = -1) -> set[tuple[str, str | None, str | None]]:
        """(node, RANK, WORLD_SIZE) of every process seen in ``attempt`` whose title starts with ``prefix``."""
        return {(node, rank, world) for node, title, rank, world in self.attempts[attempt] if title.startswith(prefix)}


def kill_node(node: str) -> int:
    """SIGKILL every process of the node, as a power cut would (slurmd, the job's steps, Ray); how many."""
    killed = 0
    for _ in range(20):  # a dying slurmstepd may still fork: until the namespace is empty
        pids = pids_on(node)
        if not pids:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.5)
    raise AssertionError(f"{node} still has processes: {pids_on(node)}")


def start_slurmd(node: str) -> None:
    """Start the node's slurmd again, as an administrator would (``.ci/slurm-node.sh``)."""
    subprocess.run(["bash", str(REPO / ".ci" / "slurm-node.sh"), node.removeprefix("n")], check=True,
                   env={**os.environ, "SLURM_CI_DIR": str(cluster_dir())}, timeout=60)


def on_node(node: str, *argv: str) -> list[str]:
    """``argv`` run inside the node: its network, its own hostname and the cluster's /etc/hosts, as slurmd's."""
    hosts = cluster_dir() / "etc" / "hosts"
    return ["nsenter", f"--net=/run/netns/{namespace(node)}", "unshare", "--uts", "--mount", "sh", "-c",
            f'hostname {node}; mount --bind "{hosts}" /etc/hosts; exec "$@"', "sh", *argv]


def node_state(node: str) -> str:
    """What SLURM says of the node: idle, mixed, allocated, down*, …"""
    return subprocess.run(["sinfo", "--noheader", "--Node", f"--nodes={node}", "--format=%T"], capture_output=True,
                          text=True, check=False).stdout.strip()


def assert_trained_on_both_nodes(seen: Sampler, attempt: int = -1) -> None:
    """What the processes of one attempt of a job show of verl across both nodes: FSDP ranks 0 and 1 of
    2 (the ``RANK`` and ``WORLD_SIZE`` verl gives each worker), one on each node; a vLLM rollout server
    on each node; and the trainer, run with ``trainer.nnodes=2``, on the head node n1."""
    workers = seen.titled("ray::WorkerDict", attempt)
    assert {world for _, _, world in workers} == {"2"}, sorted(seen.attempts[attempt])
    ranks = {node: {rank for where, rank, _ in workers if where == node} for node in NODES}
    assert sorted(ranks.values(), key=sorted) == [{"0"}, {"1"}], ranks
    assert {node for node, _, _ in seen.titled("ray::vLLMHttpServer", attempt)} == set(NODES)
    trainers = {node for node, title, _, _ in seen.attempts[attempt]
                if "verl.trainer.main_ppo" in title and "trainer.nnodes=2" in title}
    assert trainers == {"n1"}
