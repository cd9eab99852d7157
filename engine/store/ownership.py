"""Which process owns a run: a token that names the process and lets any other process tell if it is still alive.

The token carries the pid and the process's start time, so a recycled pid is not mistaken for the owner.
"""

from __future__ import annotations

import os
import socket
from functools import cache

from engine.procfs import proc_stat

__all__ = ["current_token", "token_alive"]


def _start_ticks(pid: int) -> str | None:
    stat = proc_stat(pid)
    return None if stat is None else stat.start_ticks


@cache
def current_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid()) or '?'}"


def token_alive(token: str | None) -> bool:
    if not token:
        return False
    try:
        host, pid_text, ticks = token.rsplit(":", 2)
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
    if stat is None:  # no /proc (macOS): the token carries no start time either, so the pid is all there is
        return ticks == "?"
    return not stat.zombie and (ticks == "?" or stat.start_ticks == ticks)
