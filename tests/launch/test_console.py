"""The trainer's console, sorted for people: what a real tiny run prints (lines copied from its train.log)
goes through as its view shows it: known-harmless warnings counted, real warnings once, errors whole."""

from __future__ import annotations

from fipo_cli.launch.console import KNOWN_HARMLESS, TrainerConsole

TASK = "\x1b[36m(TaskRunnerV1 pid=8060)\x1b[0m "
STORAGE = "\x1b[36m(SimpleStorageUnit pid=8418)\x1b[0m "
#: Lines of a real run's train.log (verl 0.9.1, vLLM's CPU build, TransferQueue 0.1.11), its paths shortened.
HARMLESS = [
    TASK + "/v/site-packages/verl/workers/engine/__init__.py:32: UserWarning: torchtitan engine is not available: "
           "ModuleNotFoundError(\"No module named 'torchtitan'\")",
    TASK + '  warnings.warn(f"torchtitan engine is not available: {e!r}", stacklevel=1)',
    STORAGE + "2026-12-01 22:29:33,957 - WARNING - transfer_queue.utils.common - target_num_threads 8 should not "
              "exceed total physical CPU cores 2. Setting to 2. [repeated 137x across cluster]",
    "(MainProcess pid=9073) WARNING 12-01 22:27:02 [vllm.py:1703] Enforce eager set, disabling torch.compile, "
    "CUDAGraphs, and JIT kernel warmup.",
    "/v/site-packages/verl/trainer/main_ppo.py:180: UserWarning: Disabled critic as algorithm.adv_estimator != gae. "
    "If it is not intended, please set critic.enable=True",
    "  use_critic=need_critic(config),",
]
REAL_WARNING = TASK + "WARNING:2026-12-01 22:25:15,708:data.gen_batch_size=16 is overridden to 1."
TRACEBACK = [
    TASK + "Exception ignored in atexit callback: <function teardown_atexit at 0x7f5a664cd1c0>",
    TASK + "Traceback (most recent call last):",
    TASK + '  File "/v/site-packages/wandb/sdk/lib/service/service_connection.py", line 79, in teardown_atexit',
    TASK + "    conn.teardown(hooks.exit_code)",
    TASK + "    raise ConnectionResetError('Connection lost')",
    TASK + "ConnectionResetError: Connection lost",
]


def feed_all(console: TrainerConsole, text: str, piece: int) -> list:
    notices = []
    for start in range(0, len(text), piece):
        notices += console.feed(text[start:start + piece]).notices
        notices += console.flush().notices
    return notices + console.close().notices


def test_known_harmless_warnings_are_counted_not_shown_and_real_ones_shown_once():
    console = TrainerConsole()
    text = "\n".join([*HARMLESS, REAL_WARNING, REAL_WARNING.replace("22:25:15,708", "22:26:01,002"), "done"]) + "\n"
    notices = feed_all(console, text, 64 * 1024)
    assert [(notice.kind, notice.lines) for notice in notices] == [
        ("warning", ("(TaskRunnerV1 pid=8060) WARNING:2026-12-01 22:25:15,708:data.gen_batch_size=16 is overridden to 1.",))]
    # Ray folded 137 more of TransferQueue's into one line: they count.
    assert console.harmless == {"verl's optional engines": 1, "TransferQueue thread cap": 137, "vLLM runs eagerly": 1,
                                "no critic for GRPO": 1}
    assert console.repeated_warnings == 1 and console.lines == len(HARMLESS) + 3
    assert console.summary() == (
        "fipo: counted, not shown: 140 known-harmless warnings (TransferQueue thread cap 137, verl's optional engines 1, "
        "vLLM runs eagerly 1, no critic for GRPO 1); 1 repeats of warnings shown once (all of them are in train.log)")


def test_a_traceback_is_shown_whole_per_process_however_the_output_arrives():
    other = "\x1b[36m(AgentLoopWorkerTQ pid=9947)\x1b[0m INFO: generating"
    lines = [*TRACEBACK[:3], other, *TRACEBACK[3:], "(TaskRunnerV1 pid=8060) training finished"]
    for piece in (7, 100, 64 * 1024):  # a read ends anywhere, even inside an escape sequence
        notices = feed_all(TrainerConsole(), "\n".join(lines) + "\n", piece)
        assert [notice.kind for notice in notices] == ["error"]
        assert notices[0].lines == tuple(line.replace("\x1b[36m", "").replace("\x1b[0m", "") for line in TRACEBACK)


def test_a_known_warning_a_process_logs_in_the_middle_of_its_traceback_is_counted_not_shown():
    """As a two-node run printed it when a node died: the traceback's frames, TransferQueue's warning from
    another thread of the same worker, then the traceback's exception line."""
    worker = "\x1b[36m(AgentLoopWorkerTQ pid=22464)\x1b[0m "
    frames = [worker + "Traceback (most recent call last):",
              worker + '  File "/v/site-packages/verl/workers/rollout/llm_server.py", line 81, in _acquire_server',
              worker + "    return await self._load_balancer.acquire_server.remote(request_id=request_id, **fields)"]
    warning = worker + ("2026-12-02 15:56:19,743 - WARNING - transfer_queue.utils.common - target_num_threads 8 should "
                        "not exceed total physical CPU cores 2. Setting to 2. [repeated 59x across cluster]")
    error = worker + "ray.exceptions.ActorUnavailableError: The actor c7ea is unavailable: RpcError: Connection reset"
    console = TrainerConsole()
    (notice,) = feed_all(console, "\n".join([*frames, warning, error]) + "\n", 64 * 1024)
    assert notice.kind == "error" and len(notice.lines) == 4 and notice.lines[-1].endswith("Connection reset")
    assert not any("target_num_threads" in line for line in notice.lines)
    assert console.harmless == {"TransferQueue thread cap": 59}


def test_an_error_shows_at_the_next_flush_but_one_without_waiting_for_more_output():
    console = TrainerConsole()
    assert console.feed("\n".join(TRACEBACK) + "\n").notices == []
    assert console.flush().notices == []  # the message may go on in the next read
    (notice,) = console.flush().notices
    assert notice.lines[-1].endswith("ConnectionResetError: Connection lost")


def test_an_error_line_keeps_the_indented_lines_under_it():
    text = ("ray.exceptions.RayTaskError(FileNotFoundError): ray::TaskRunnerV1.run() (pid=8060)\n"
            '  File "/v/site-packages/verl/trainer/main_ppo.py", line 151, in run\n'
            "FileNotFoundError: /no/such/model\n")
    notices = feed_all(TrainerConsole(), text, 1000)
    assert [notice.kind for notice in notices] == ["error", "error"]
    assert len(notices[0].lines) == 2 and notices[1].lines == ("FileNotFoundError: /no/such/model",)


def test_a_line_ray_cut_in_two_is_still_known():
    cut = [STORAGE + "2026-12-01 22:29:30,733 - WARNING - tran",
           STORAGE + "sfer_queue.utils.common - target_num_threads 8 should not exceed total physical CPU cores 2. "
                     "Setting to 2."]
    console = TrainerConsole()
    assert feed_all(console, "\n".join(cut) + "\n", 64 * 1024) == []
    assert console.harmless == {"TransferQueue thread cap": 1}
    # A real warning followed by another process's warning is not joined to it.
    console = TrainerConsole()
    notices = feed_all(console, REAL_WARNING + "\n" + TASK + HARMLESS[0].removeprefix(TASK) + "\n", 64 * 1024)
    assert [notice.lines[0] for notice in notices] == [REAL_WARNING.replace("\x1b[36m", "").replace("\x1b[0m", "")]


def test_start_up_phases_come_in_order_and_the_step_count_is_read():
    console = TrainerConsole()
    seen = []
    for line in ("2026-12-01 22:24:34,687\tINFO worker.py:2038 -- Connected to Ray cluster.",
                 TASK + "INFO:2026-12-01 22:25:15,717:Total training steps: 20",
                 TASK + "INFO:2026-12-01 22:25:17,883:create worker group dict_keys(['actor_rollout'])",
                 TASK + "INFO:2026-12-01 22:27:52,191:Initializing a V1 LLM engine with config: model='tiny'",
                 "Connected to Ray cluster.",  # again: a phase never goes back
                 TASK + "INFO:2026-12-01 22:27:53,084:all initialize finished, ready to fit"):
        shown = console.feed(line + "\n")
        seen.append(shown.phase)
        if shown.total_steps:
            total = shown.total_steps
    assert seen == ["Ray connected: loading the data", None, "starting the training workers", "starting vLLM", None,
                    "ready: the first step runs (its generation warms up)"]
    assert total == 20


def test_every_known_pattern_hides_only_what_it_names():
    near_misses = ["WARNING: target_num_threads is fine", "UserWarning: torchtitan engine failed to load weights",
                   "WARNING: Triton kernels produced NaN", "WARNING: LoRA adapter could not be loaded"]
    for line in near_misses:
        assert not any(known.pattern.search(line) for known in KNOWN_HARMLESS), line
        console = TrainerConsole()
        assert [notice.kind for notice in feed_all(console, line + "\n", 100)] == ["warning"]
