"""Who runs a run, asked of real processes: alive, exited, a pid given to another process since, another host."""

from __future__ import annotations

import dataclasses
import os
import subprocess

from fipo_cli.core.processes import ProcessRef, pid_alive, start_mark, this_process


def test_this_process_is_running_and_an_exited_one_is_not():
    assert this_process().running() is True
    child = subprocess.Popen(["sleep", "30"])
    recorded = ProcessRef(this_process().host, child.pid, start_mark(child.pid))
    assert recorded.running() is True
    child.kill()
    child.wait()
    assert recorded.running() is False and not pid_alive(child.pid)


def test_a_pid_that_now_belongs_to_another_process_is_not_the_recorded_one():
    me = this_process()
    boot, ticks = me.start.rsplit(":", 1)
    started_earlier = dataclasses.replace(me, start=f"{boot}:{int(ticks) - 1}")
    started_before_a_reboot = dataclasses.replace(me, start=f"another-boot:{ticks}")
    assert started_earlier.running() is False and started_before_a_reboot.running() is False


def test_a_process_on_another_host_cannot_be_asked_after():
    assert dataclasses.replace(this_process(), host="gpu-box-7").running() is None


def test_the_start_mark_counts_clock_ticks_since_boot():
    """Independent of fipo: /proc/self/stat's field 22 and the boot id, read here with another split."""
    with open(f"/proc/{os.getpid()}/stat") as stat:
        fields = stat.read().split()
    with open("/proc/sys/kernel/random/boot_id") as boot:
        # This test's command name has no space, so plain splitting finds field 22 (index 21).
        assert start_mark(os.getpid()) == f"{boot.read().strip()}:{fields[21]}"
