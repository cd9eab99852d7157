"""Run a delegation's verify command: `sh -c CMD` in the project root, with a timeout, keeping the output's tail.

The command runs in its own process group so a timeout or a cancellation kills everything it started (a test runner's
children included), not only the shell. The result is decided when the shell exits: a background child that keeps the
output pipe open (`server & pytest; exit 0`) gets EXIT_GRACE_S to finish writing, then its output is dropped and the
group is killed, so a pass is never turned into a timeout by a process the command left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import structlog

__all__ = ["DEFAULT_TIMEOUT_S", "EXIT_GRACE_S", "TAIL_BYTES", "VerifyResult", "run_verify", "tail"]

DEFAULT_TIMEOUT_S = 300.0
TAIL_BYTES = 4000
EXIT_GRACE_S = 1.0
"""After the shell exits, how long output still held open by a background child is read before it is dropped."""

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class VerifyResult:
    passed: bool
    exit_code: int | None
    output_tail: str
    timed_out: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "output_tail": self.output_tail,
            "timed_out": self.timed_out,
            "seconds": round(self.seconds, 3),
        }


def tail(data: bytes, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes as text, marked when cut."""
    if len(data) <= limit:
        return data.decode("utf-8", errors="replace")
    return "[... output cut ...]\n" + data[-limit:].decode("utf-8", errors="replace")


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class _Output:
    """The command's output as it is read, bounded (only the tail is reported); `ended` once the pipe closes."""

    def __init__(self, tail_bytes: int) -> None:
        self.buffer = bytearray()
        self.ended = anyio.Event()
        self._tail_bytes = tail_bytes

    async def read(self, stream: anyio.abc.ByteReceiveStream) -> None:
        try:
            async for chunk in stream:
                self.buffer.extend(chunk)
                if len(self.buffer) > 4 * self._tail_bytes:
                    del self.buffer[: len(self.buffer) - 2 * self._tail_bytes]
        finally:
            self.ended.set()


async def _run(process: anyio.abc.Process, output: _Output, timeout: float) -> tuple[bool, bool]:
    """Wait for the shell (killing its group past `timeout`), then read what is left for EXIT_GRACE_S at most;
    (timed out, output dropped)."""
    assert process.stdout is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(output.read, process.stdout)
        with anyio.move_on_after(timeout) as scope:
            await process.wait()
        if scope.cancelled_caught:
            _kill_group(process.pid)
            with anyio.CancelScope(shield=True):
                await process.wait()
        with anyio.move_on_after(EXIT_GRACE_S):
            await output.ended.wait()
        dropped = not output.ended.is_set()
        tg.cancel_scope.cancel()
    return scope.cancelled_caught, dropped


async def run_verify(
    command: str, *, cwd: Path, timeout: float = DEFAULT_TIMEOUT_S, tail_bytes: int = TAIL_BYTES,
    env: dict[str, str] | None = None,
) -> VerifyResult:
    """Run `command`; passed means the shell exited with status 0 within `timeout`. Whatever the command started is
    killed when it ends, times out, or the caller is cancelled."""
    started = time.monotonic()
    output = _Output(tail_bytes)
    # Shielded: a cancel that lands while the process is being set up would make asyncio kill the shell alone
    # (not its group) and lose the handle, leaving whatever the shell had already started running. Spawning takes
    # milliseconds; the cancel is delivered at the next checkpoint, inside the `try` that kills the group.
    with anyio.CancelScope(shield=True):
        process = await anyio.open_process(
            ["sh", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )
    try:
        timed_out, dropped = await _run(process, output, timeout)
    finally:
        # Ended, timed out, cancelled or failed: nothing the command started outlives it.
        _kill_group(process.pid)
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()
    text = tail(bytes(output.buffer), tail_bytes)
    if dropped:
        text += (f"\n[the command exited; processes it left running kept its output open: their output after "
                 f"{EXIT_GRACE_S:g} s was dropped and they were killed]")
    if timed_out:
        text += f"\n[verify command timed out after {timeout:g} s and was killed]"
    code = process.returncode
    result = VerifyResult(
        passed=not timed_out and code == 0, exit_code=code, output_tail=text, timed_out=timed_out,
        seconds=time.monotonic() - started,
    )
    log.info("verify finished", command=command, passed=result.passed, exit_code=code, timed_out=timed_out,
             background_killed=dropped)
    return result
