from __future__ import annotations

import contextlib
import os
import random
import signal
import time
import uuid
from pathlib import Path

import anyio
import pytest

from engine.delegation.verify import EXIT_GRACE_S, run_verify, tail


@pytest.mark.anyio
async def test_a_passing_command_runs_in_the_project_root(project_dir: Path) -> None:
    (project_dir / "marker").write_text("here")
    with anyio.fail_after(10):
        result = await run_verify("cat marker && pwd", cwd=project_dir)
    assert result.passed and result.exit_code == 0
    assert "here" in result.output_tail and str(project_dir) in result.output_tail


@pytest.mark.anyio
async def test_a_failing_command_reports_its_exit_code_and_the_tail_of_stdout_and_stderr(project_dir: Path) -> None:
    with anyio.fail_after(10):
        result = await run_verify("seq 1 5000; echo boom >&2; exit 3", cwd=project_dir, tail_bytes=200)
    assert not result.passed and result.exit_code == 3
    assert result.output_tail.endswith("5000\nboom\n")
    assert result.output_tail.startswith("[... output cut ...]")
    assert "\n1\n" not in result.output_tail


@pytest.mark.anyio
async def test_a_command_past_its_timeout_is_killed_with_its_children(project_dir: Path) -> None:
    pidfile = project_dir / "child.pid"
    with anyio.fail_after(10):
        result = await run_verify(f"sleep 30 & echo $! > {pidfile}; wait", cwd=project_dir, timeout=0.5)
    assert result.timed_out and not result.passed
    assert "timed out" in result.output_tail
    child = int(pidfile.read_text())
    with anyio.fail_after(5):
        while True:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
                break
            await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_cancelling_the_caller_kills_the_command(project_dir: Path) -> None:
    pidfile = project_dir / "sh.pid"
    with anyio.fail_after(10):
        with anyio.move_on_after(0.5):
            await run_verify(f"echo $$ > {pidfile}; sleep 30", cwd=project_dir)
        pid = int(pidfile.read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_tail_keeps_short_output_whole() -> None:
    assert tail(b"ok\n") == "ok\n"
    assert tail(b"x" * 10, 4) == "[... output cut ...]\nxxxx"


async def _gone(pid: int) -> None:
    """Until `pid` no longer runs (a zombie left for its reaper counts as gone)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return
        await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_a_pass_is_decided_when_the_shell_exits_even_if_a_background_child_holds_the_output(
    project_dir: Path,
) -> None:
    pidfile = project_dir / "child.pid"
    started = time.monotonic()
    with anyio.fail_after(10):
        result = await run_verify(f"sleep 30 & echo $! > {pidfile}; echo ok; exit 0", cwd=project_dir, timeout=20)
    assert result.passed and result.exit_code == 0 and not result.timed_out
    assert time.monotonic() - started < EXIT_GRACE_S + 3
    assert result.output_tail.startswith("ok\n")
    assert "were killed" in result.output_tail
    with anyio.fail_after(5):
        await _gone(int(pidfile.read_text()))  # the process group is still cleaned up


@pytest.mark.anyio
async def test_a_failure_with_a_background_child_keeps_its_exit_code_and_ends_fast(project_dir: Path) -> None:
    with anyio.fail_after(10):
        result = await run_verify("sleep 30 & echo broken; exit 3", cwd=project_dir, timeout=20)
    assert not result.passed and result.exit_code == 3 and not result.timed_out
    assert result.seconds < EXIT_GRACE_S + 3


@pytest.mark.anyio
async def test_output_a_background_child_writes_within_the_grace_period_is_kept(project_dir: Path) -> None:
    with anyio.fail_after(10):
        result = await run_verify("(sleep 0.2; echo late) & echo early", cwd=project_dir)
    assert result.passed
    assert result.output_tail == "early\nlate\n"


def processes_marked(mark: str) -> dict[int, str]:
    """Live processes whose environment carries `mark` (pid -> its value); a zombie's environment reads empty."""
    found: dict[int, str] = {}
    needle = f"{mark}=".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for var in environ.split(b"\0"):
            if var.startswith(needle):
                found[int(entry.name)] = var[len(needle):].decode()
    return found


async def cancels_that_leak(cancels: int, *, seed: int, latest_s: float, cwd: Path) -> set[str]:
    """Cancel `cancels` verify commands that start background children, each at a seeded random instant in
    [0, latest_s) after the call; the cancels (by index) whose processes are still alive once the killed ones have had
    time to die. Survivors are killed before returning."""
    rng = random.Random(seed)
    mark = f"LOCAL_LLM_LEAK_{uuid.uuid4().hex}"
    for i in range(cancels):
        with anyio.move_on_after(rng.uniform(0, latest_s)):
            await run_verify("sleep 60 & sleep 60 & wait", cwd=cwd, env={**os.environ, mark: str(i)})
    deadline = time.monotonic() + 3  # SIGKILL is asynchronous: a killed child may take a moment to go
    while (alive := processes_marked(mark)) and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return set(alive.values())


@pytest.mark.anyio
async def test_a_cancel_at_any_instant_leaves_no_process_of_the_command_alive(project_dir: Path) -> None:
    # The instants cover the spawn itself (asyncio used to kill the bare shell and lose the handle when a cancel
    # landed while the process was being set up: its background children lived on), the shell starting its
    # children, and the wait.
    with anyio.fail_after(120):
        leaked = await cancels_that_leak(60, seed=19, latest_s=0.03, cwd=project_dir)
    assert leaked == set()
