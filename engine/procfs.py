"""The one reader of a process's state and start time, for ownership tokens and server processes: psutil, the same
on Linux, macOS and Windows (it reads /proc/<pid>/stat on Linux, sysctl KERN_PROC on macOS)."""

from __future__ import annotations

import os

import psutil

__all__ = ["ProcStat", "proc_stat"]


class ProcStat:
    __slots__ = ("started", "state")

    def __init__(self, state: str, started: float | None) -> None:
        self.state = state
        """psutil's status: running, sleeping, zombie (exited, not yet reaped), ...; `?` when access is denied."""
        self.started = started
        """Start time in seconds since the epoch: with the pid, it names one process even after the pid is recycled.
        None when the process may not be inspected."""

    @property
    def zombie(self) -> bool:
        return self.state in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)

    @property
    def start_ticks(self) -> int | None:
        """The start in clock ticks since boot, /proc/<pid>/stat's field 22 (what tokens held before psutil): Linux
        computes create_time as boot time + ticks / CLK_TCK, so this inverts it exactly."""
        if self.started is None or not hasattr(os, "sysconf"):
            return None
        return round((self.started - psutil.boot_time()) * os.sysconf("SC_CLK_TCK"))


def proc_stat(pid: int) -> ProcStat | None:
    """None when the process does not exist."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            return ProcStat(process.status(), process.create_time())
    except psutil.ZombieProcess:
        return ProcStat(psutil.STATUS_ZOMBIE, None)
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return ProcStat("?", None)
