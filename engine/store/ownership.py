"""Which process owns a run: a token that names the process and lets any other process tell if it is still alive.

The token carries the pid and the process's start time (seconds since the epoch, from psutil, `s` first), so a recycled
pid is not mistaken for the owner. Tokens written before psutil hold the start in clock ticks since boot (digits
only, Linux's /proc/<pid>/stat field 22) and still match; `?` is a start time that could not be read.
"""

from __future__ import annotations

import os
import socket
from functools import cache

from engine.procfs import ProcStat, proc_stat

__all__ = ["current_token", "token_alive"]

START_TOLERANCE_S = 0.015
"""psutil's start time is in hundredths on Linux (clock ticks); the same process always gives the same value."""


def _started(pid: int) -> str | None:
    stat = proc_stat(pid)
    return None if stat is None or stat.started is None else f"s{stat.started:.2f}"


@cache
def current_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_started(os.getpid()) or '?'}"


def _same_start(stored: str, stat: ProcStat) -> bool:
    if stored == "?" or stat.started is None:
        return True  # nothing to compare: the pid is all there is
    if stored.startswith("s"):
        return abs(float(stored[1:]) - stat.started) < START_TOLERANCE_S
    return stored.isdigit() and stat.start_ticks == int(stored)


def token_alive(token: str | None) -> bool:
    if not token:
        return False
    try:
        host, pid_text, started = token.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another machine's process: assume alive rather than steal its work
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = proc_stat(pid)
    try:
        return stat is not None and not stat.zombie and _same_start(started, stat)
    except ValueError:
        return False  # a malformed start time
