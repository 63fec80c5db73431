"""Jobs across the two nodes of a real SLURM cluster, and a node that dies under one.

The cluster is .ci/slurm-up.sh's: nodes n1 and n2, each a network namespace of this machine with
its own address, hostname and slurmd (:mod:`cluster_nodes`). Where a process ran is read from
the process itself (its network namespace, its title, the RANK verl gave it), by the test; and a
node is killed as a power cut would kill it: every process of its namespace, slurmd included.

The stand-in tests need a minute or two; the one that trains verl's tiny recipe across both nodes
(and kills one under it) is marked ``training``: minutes, and ~9 GiB.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cluster_nodes
from fipo_run import run_fipo, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.multinode]

FINAL = ("succeeded", "failed", "cancelled", "timeout")

#: A trainer that runs one Ray task on every node of the job's cluster; each task reports the
#: network namespace it ran in (the inode of /proc/self/ns/net) and its host's name.
STAND_IN = textwrap.dedent(
    """
    import json, os, socket, sys
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    ray.init(log_to_driver=False)

    @ray.remote(num_cpus=0)
    def where():
        return {"netns": os.stat("/proc/self/ns/net").st_ino, "host": socket.gethostname()}

    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    seen = ray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote()
                    for node in nodes])
    print("STAND-IN " + json.dumps({"seen": seen, "argv": sys.argv[1:]}), flush=True)
    with open(os.environ["VERL_FILE_LOGGER_PATH"], "a") as metrics:
        metrics.write(json.dumps({"step": 1, "data": {"response_length/mean": 100.0}}) + "\\n")
    sys.exit(0 if len(seen) == 2 else 3)
    """
)


def fipo(project: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    cache = os.environ.get("FIPO_TEST_CACHE") or str(project.parent / "fipo-cache")
    return run_fipo(project, *args, timeout=timeout, unset=("WANDB_*", "RAY_ADDRESS"), WANDB_MODE="offline",
                    FIPO_CACHE_DIR=cache, **env)


def rows(project: Path, target: str) -> list[dict]:
    result = fipo(project, "status", target, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def final_rows(project: Path, target: str, count: int, timeout: float) -> list[dict]:
    def finished():
        found = rows(project, target)
        return found if sum(row["state"] in FINAL for row in found) == count else None
    return wait_for(finished, timeout=timeout, what=f"{count} runs of {target} to finish")


def scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "--oneliner", "show", "job", job_id], capture_output=True, text=True,
                         check=False).stdout
    return dict(item.split("=", 1) for item in out.split() if "=" in item)


def submitted(result: subprocess.CompletedProcess, what: str = "job") -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(rf"as SLURM {what} (\d+)", result.stdout)
    assert match, result.stdout
    return match.group(1)


#: SLURM's states of a job that has ended (COMPLETING is not one: its steps are still being torn down).
ENDED_JOB = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")


def ended_job(job_id: str, timeout: float, what: str) -> dict[str, str]:
    """``scontrol show job``'s fields once the job has ended."""
    def ended():
        job = scontrol_job(job_id)
        return job if job.get("JobState") in ENDED_JOB else None
    return wait_for(ended, timeout=timeout, what=what)


def netns_inode(node: str) -> int:
    return os.stat(f"/run/netns/{cluster_nodes.namespace(node)}").st_ino


def no_ray_left(job_id: str) -> None:
    """Nothing of the job's Ray cluster (its temp dir's name) is left on either node."""
    def gone():
        return not [seen for node in cluster_nodes.NODES for seen in cluster_nodes.processes_on(node)
                    if f"ray-fipo-{job_id}" in seen.title]
    wait_for(gone, timeout=60, what=f"job {job_id}'s Ray to stop on both nodes")


@pytest.fixture
def stand_in_project(tmp_path: Path) -> Path:
    """experiments/smoke from the one-GPU recipe on SLURM, 2 nodes × 2 GPUs, training with :data:`STAND_IN`."""
    assert fipo(tmp_path, "init", "smoke", "--model", "qwen2.5-0.5b").returncode == 0
    (tmp_path / "stand_in.py").write_text(STAND_IN)
    config_file = tmp_path / "experiments" / "smoke" / "fipo.yaml"
    text = config_file.read_text().replace("  seed: 42", f"  seed: 42\n  entrypoint: [{sys.executable}, stand_in.py]")
    text = text.replace("  launcher: local ", "  launcher: slurm ", 1)
    text = re.sub(r"^  gpus_per_node: 1 ", "  nodes: 2\n  ray_start_timeout: 300\n  gpus_per_node: 2 ", text,
                  count=1, flags=re.MULTILINE)
    assert "nodes: 2" in text and "launcher: slurm" in text
    config_file.write_text(text)
    return tmp_path


def test_a_sweep_of_two_points_is_one_job_array_whose_tasks_span_both_nodes(stand_in_project):
    project = stand_in_project
    result = fipo(project, "sweep", "smoke", "seed=1,2", "--name", "two")
    array = submitted(result, "job array")
    found = final_rows(project, "two", 2, timeout=300)
    assert [row["state"] for row in found] == ["succeeded", "succeeded"], found
    assert sorted(row["job_id"] for row in found) == [f"{array}_0", f"{array}_1"]
    inodes = {netns_inode(node): node for node in cluster_nodes.NODES}
    for row in found:
        task = scontrol_job(row["job_id"])
        assert task["ArrayJobId"] == array and task["NumNodes"] == "2" and task["NodeList"] == "n[1-2]"
        log = (project / row["run_dir"] / "train.log").read_text()
        (report,) = [json.loads(line.removeprefix("STAND-IN ")) for line in log.splitlines()
                     if line.startswith("STAND-IN ")]
        assert sorted(inodes[seen["netns"]] for seen in report["seen"]) == ["n1", "n2"]
        assert sorted(seen["host"] for seen in report["seen"]) == ["n1", "n2"]
        seed = re.search(r"seed(\d)", row["run"]).group(1)
        assert f"data.seed={seed}" in report["argv"]  # each task trained its own run's config
        no_ray_left(row["job_id"])


@pytest.fixture
def n2_without_ray():
    """Node n2 with a `ray` that never joins (a broken image, say): a bind mount over the environment's
    `ray` inside n2's slurmd mount namespace only, so every job step there sees it and n1 does not."""
    ray = Path(sys.executable).with_name("ray")
    fake = cluster_nodes.cluster_dir() / "never-joins"
    fake.write_text("#!/bin/sh\necho \"fake ray on $(hostname): never joins\"\nexec sleep 600\n")
    fake.chmod(0o755)
    slurmd = (cluster_nodes.cluster_dir() / "run" / "slurmd-n2.pid").read_text().strip()
    enter = ["nsenter", f"--target={slurmd}", "--mount"]
    subprocess.run([*enter, "mount", "--bind", str(fake), str(ray)], check=True)
    try:
        yield
    finally:
        subprocess.run([*enter, "umount", str(ray)], check=True)


def test_a_node_whose_ray_worker_never_joins_fails_the_run_in_time_naming_it(stand_in_project, n2_without_ray):
    project = stand_in_project
    timeout = 60  # the head must start within it too: ~5 s on an idle machine, 30 s on a busy one
    job_id = submitted(fipo(project, "train", "smoke", f"cluster.ray_start_timeout={timeout}"))
    (row,) = final_rows(project, "smoke", 1, timeout=300)
    assert row["state"] == "failed"
    assert row["reason"].startswith(f"the Ray cluster is incomplete after {timeout} s: nodes that did not join: n2; "
                                    "joined: n1 (2 GPUs)")
    shown = fipo(project, "status", "smoke").stdout
    assert f"smoke/{row['run']} failed: the Ray cluster is incomplete after {timeout} s" in shown
    # The run is recorded failed as the wait gives up; the job ends once Ray is stopped on both nodes.
    job = wait_for(lambda: scontrol_job(job_id)["JobState"] == "FAILED" and scontrol_job(job_id), timeout=120,
                   what="SLURM to end the job")
    minutes, seconds = map(int, job["RunTime"].split(":")[-2:])
    assert minutes * 60 + seconds < timeout + 60  # the fake `ray` sleeps 600 s: the job did not wait for it
    job_log = fipo(project, "logs", f"smoke/{row['run']}", "--job").stdout
    assert "fake ray on n2: never joins" in job_log and "nodes that did not join: n2" in job_log
    assert not (project / row["run_dir"] / "train.log").exists()  # no trainer started
    no_ray_left(job_id)


# ----------------------------------------------------------------------------- verl's trainer on both nodes


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """The tiny recipe, in a directory whose name needs quoting everywhere (batch script, Hydra, Ray's env)."""
    root = tmp_path / "it's $HOME `x`"
    root.mkdir()
    assert fipo(root, "init", "tiny", "--model", "tiny").returncode == 0
    return root


def metric_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for name in ("metrics.earlier.jsonl", "metrics.jsonl")
            if (run_dir / name).is_file() for line in (run_dir / name).read_text().splitlines() if line.strip()]


@pytest.fixture
def n2_back_afterwards():
    """The test kills n2; whatever it asserts, the tests after it get both nodes back."""
    yield
    cluster_nodes.start_slurmd("n2")  # a no-op when its slurmd runs


@pytest.mark.verl
@pytest.mark.training
def test_the_tiny_recipe_trains_across_both_nodes_survives_one_dying_and_is_evaluated_and_reported(tiny_project,
                                                                                                    n2_back_afterwards):
    """One run tells it all (each real run of two nodes costs minutes): it trains across both nodes, n2
    is killed once step 1 is checkpointed and logged, SLURM requeues the job, and the run resumes and ends; then
    it is followed, evaluated on one node and reported."""
    root = tiny_project
    steps, saved = 2, 1
    with cluster_nodes.Sampler() as seen:
        job_id = submitted(fipo(root, "train", "tiny", "--launcher", "slurm", "nodes=2",
                                f"trainer.total_training_steps={steps}", f"trainer.save_freq={saved}"))
        (run_dir,) = (root / "experiments" / "tiny" / "runs").iterdir()
        checkpoint = run_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
        # The checkpointed step whole: verl 0.9.1 saves a step's checkpoint before it logs its metrics
        # (verl/trainer/ppo/v1/trainer_base.py, fit: _save_checkpoint at line 485, logger.log at 514), so a
        # node lost in between leaves that step without a record; the resumed run starts after it.
        wait_for(lambda: checkpoint.is_file() and checkpoint.read_text().strip() == str(saved) and saved in metric_steps(run_dir),
                 timeout=1500, what="the first checkpoint and its step's metrics")
        cluster_nodes.assert_trained_on_both_nodes(seen)
        assert cluster_nodes.kill_node("n2") > 0  # every process of n2: its slurmd, Ray, verl's rank on it

        # SLURM declares n2 dead (SlurmdTimeout) and requeues the job; it waits for two nodes again.
        wait_for(lambda: scontrol_job(job_id).get("Restarts") == "1" and scontrol_job(job_id)["JobState"] == "PENDING",
                 timeout=300, what="SLURM to requeue the job")
        assert cluster_nodes.node_state("n2").startswith("down")
        (row,) = rows(root, "tiny")
        assert row["state"] == "pending" and "left the job's Ray cluster under the trainer (n2;" in (row["reason"] or ""), (
            row, (run_dir / f"slurm-{job_id}.out").read_text()[-3000:])
        seen.next_attempt()
        cluster_nodes.start_slurmd("n2")
        wait_for(lambda: cluster_nodes.node_state("n2") == "idle", timeout=60, what="n2 to be back")
        # SLURM holds a requeued job back for two minutes before it may start again; skip that wait.
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
        (row,) = final_rows(root, "tiny", 1, timeout=1500)
    assert row["state"] == "succeeded", (run_dir / "train.log").read_text()[-3000:]
    cluster_nodes.assert_trained_on_both_nodes(seen)  # the second attempt too
    status = json.loads((run_dir / "status.json").read_text())
    assert status["restarts"] == 1 and status["job_id"] == job_id and row["restarts"] == 1

    # Every step once: the first attempt's (1; a step 2 begun is lost with the node) and the resumed one.
    assert set(metric_steps(run_dir)) == set(range(1, steps + 1)) and row["last_step"] == steps
    assert sorted(json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()) == [steps]
    assert checkpoint.read_text().strip() == str(steps)
    # One W&B run: the second attempt logs into the first one's id, from step 2 on.
    wandb_records = pytest.importorskip("wandb_records")
    first, second = wandb_records.run_files(run_dir / "wandb")
    assert wandb_records.run_id(first) == wandb_records.run_id(second) == status["wandb_run_id"]
    assert [record["_step"] for record in wandb_records.history(second)] == [steps]

    script = (run_dir / "job.sbatch").read_text()
    assert "#SBATCH --nodes=2" in script and "#SBATCH --cpus-per-task=2" in script
    assert "#SBATCH --gpus-per-node" not in script  # trainer.device cpu: no GPU asked for
    # The run is recorded as its trainer ends; the job ends once Ray is stopped on both nodes.
    job = ended_job(job_id, timeout=120, what="SLURM to end the job")
    assert (job["JobState"], job["NodeList"], job["NumCPUs"]) == ("COMPLETED", "n[1-2]", "4")
    no_ray_left(job_id)

    logs = fipo(root, "logs", f"tiny/{run_dir.name}")
    assert logs.returncode == 0 and re.search(rf"step:{steps} - ", logs.stdout)
    job_log = fipo(root, "logs", f"tiny/{run_dir.name}", "--job").stdout
    assert "restart 1" in job_log and "left the job's Ray cluster" in job_log
    assert job_log.count("2 nodes × 1 GPU each") == 2  # the Ray cluster of each attempt
    # The job's log gets the run's view, a line per step; train.log keeps everything verl printed.
    assert f"fipo: step {steps}/{steps} · " in job_log and "target_num_threads" not in job_log
    assert "target_num_threads" in (run_dir / "train.log").read_text()
    watched = fipo(root, "watch", f"tiny/{run_dir.name}")  # from the shared filesystem, once it has ended
    assert watched.returncode == 0 and f"fipo: step {steps}/{steps} · " in watched.stdout
    assert "succeeded" in watched.stderr
    shown = fipo(root, "status", "tiny").stdout
    assert re.search(rf"tiny/{run_dir.name}\s+{job_id}\s+succeeded\s", shown)
    assert f"tiny/{run_dir.name} succeeded (restarted 1×): 1 node left the job's Ray cluster" in shown

    # The checkpoint of two FSDP ranks, merged and evaluated by a one-node SLURM job.
    evaluated = fipo(root, "eval", "aime24", "--run", f"tiny/{run_dir.name}", "--slurm", "--engine", "transformers",
                     "--samples", "2", "--limit", "2", "--max-tokens", "8", "--no-wandb", "--json")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    eval_job = json.loads(evaluated.stdout)
    ended = ended_job(eval_job["job_id"], timeout=900, what="the evaluation job")
    assert (ended["JobState"], ended["NumNodes"]) == ("COMPLETED", "1"), Path(eval_job["log"]).read_text()[-3000:]
    results_file = run_dir / "eval" / "aime24" / f"step_{steps}" / "results.json"
    assert eval_job["results"] == str(results_file)
    results = json.loads(results_file.read_text())
    assert results["settings"]["model"].endswith(f"global_step_{steps}/actor/huggingface_merged")
    assert (results["graders"]["dapo"]["problems"], results["graders"]["dapo"]["n"]) == (2, 2)

    report = fipo(root, "report", "tiny", "--json")
    assert report.returncode == 0, report.stderr
    html = (root / json.loads(report.stdout)["html"]).read_text()
    assert f"<td>tiny/{run_dir.name}</td>" in html and f"<td>1–{steps} ({steps})</td>" in html
