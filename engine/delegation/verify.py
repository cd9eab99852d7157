"""Run a delegation's verify command: `sh -c CMD` in the project root, with a timeout, keeping the output's tail.

The command runs in its own process group so a timeout or a cancellation kills everything it started (a test runner's
children included), not only the shell.
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
import structlog

__all__ = ["DEFAULT_TIMEOUT_S", "TAIL_BYTES", "VerifyResult", "run_verify", "tail"]

DEFAULT_TIMEOUT_S = 300.0
TAIL_BYTES = 4000

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


async def run_verify(
    command: str, *, cwd: Path, timeout: float = DEFAULT_TIMEOUT_S, tail_bytes: int = TAIL_BYTES,
    env: dict[str, str] | None = None,
) -> VerifyResult:
    """Run `command`; passed means exit status 0 within `timeout`. Cancelling the caller kills the process group."""
    started = time.monotonic()
    buffer = bytearray()
    timed_out = False
    process = await anyio.open_process(
        ["sh", "-c", command], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True, env=env,
    )
    try:
        with anyio.move_on_after(timeout) as scope:
            assert process.stdout is not None
            async for chunk in process.stdout:
                buffer.extend(chunk)
                if len(buffer) > 4 * tail_bytes:  # keep memory bounded; only the tail is reported
                    del buffer[: len(buffer) - 2 * tail_bytes]
            await process.wait()
        if scope.cancelled_caught:
            timed_out = True
            _kill_group(process.pid)
            with anyio.CancelScope(shield=True):
                await process.wait()
    except BaseException:
        # Cancelled (or failed): never leave the command running behind us.
        _kill_group(process.pid)
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()
        raise
    await process.aclose()
    output = tail(bytes(buffer), tail_bytes)
    if timed_out:
        output += f"\n[verify command timed out after {timeout:g} s and was killed]"
    code = process.returncode
    result = VerifyResult(
        passed=not timed_out and code == 0, exit_code=code, output_tail=output, timed_out=timed_out,
        seconds=time.monotonic() - started,
    )
    log.info("verify finished", command=command, passed=result.passed, exit_code=code, timed_out=timed_out)
    return result
