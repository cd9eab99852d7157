"""Ownership tokens (engine/store/ownership.py): the pid and the start time from psutil, real processes; tokens
written before psutil (clock ticks from /proc/<pid>/stat) still match their live owner."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from engine.procfs import proc_stat
from engine.store.ownership import current_token, token_alive

HOST = socket.gethostname()


def old_token(pid: int) -> str:
    """What the code before psutil wrote: field 22 of /proc/<pid>/stat, the start in clock ticks since boot."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return f"{HOST}:{pid}:{fields[19]}"


def test_this_process_token_names_its_pid_and_psutils_start_time() -> None:
    host, pid, started = current_token().rsplit(":", 2)
    assert (host, int(pid)) == (HOST, os.getpid())
    assert started == f"s{psutil.Process().create_time():.2f}"
    assert token_alive(current_token())


def test_a_token_of_an_exited_process_or_of_a_recycled_pid_is_dead() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as child:
        pid = child.pid
        child.wait()
    assert not token_alive(f"{HOST}:{pid}:s1.00")
    started = psutil.Process().create_time()
    assert not token_alive(f"{HOST}:{os.getpid()}:s{started - 5:.2f}")  # same pid, another start: recycled


def test_a_token_without_a_start_time_matches_the_pid_alone_and_garbage_matches_nothing() -> None:
    assert token_alive(f"{HOST}:{os.getpid()}:?")
    assert not token_alive(f"{HOST}:{os.getpid()}:sNaNx")
    assert not token_alive("not a token")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="tokens before psutil held /proc clock ticks")
def test_a_token_stored_before_the_upgrade_still_matches_its_live_owner() -> None:
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as child:
        try:
            token = old_token(child.pid)
            assert token_alive(token)
            host, pid, ticks = token.rsplit(":", 2)
            assert not token_alive(f"{host}:{pid}:{int(ticks) + 1}")
            stat = proc_stat(child.pid)
            assert stat is not None and stat.start_ticks == int(ticks)
        finally:
            child.communicate(b"")
    assert not token_alive(token)


def test_a_zombie_owner_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Wait for the exit without reaping it (WNOWAIT): the child stays a zombie until wait().
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
        stat = proc_stat(child.pid)
        assert stat is not None and stat.zombie
        assert not token_alive(f"{HOST}:{child.pid}:?")
    finally:
        child.wait()
