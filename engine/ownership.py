"""Which process owns a run: a token that names the process and lets any other process tell if it is still alive.

The token carries the pid and the process's start time, so a recycled pid is not mistaken for the owner.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path

__all__ = ["current_token", "token_alive"]


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name in field 2 may contain spaces, so split after its closing paren.
    return stat.rsplit(")", 1)[1].split()[19]


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
    return ticks == "?" or _start_ticks(pid) == ticks
