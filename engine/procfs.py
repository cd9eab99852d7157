"""The one reader of `/proc/<pid>/stat`: process state and start time, for ownership tokens and server processes."""

from __future__ import annotations

from pathlib import Path

__all__ = ["ProcStat", "proc_stat"]


class ProcStat:
    __slots__ = ("start_ticks", "state")

    def __init__(self, state: str, start_ticks: str) -> None:
        self.state = state
        """One letter: R running, S sleeping, Z zombie (exited, not yet reaped), ..."""
        self.start_ticks = start_ticks
        """Field 22 (starttime): with the pid, it names one process even after the pid is recycled."""

    @property
    def zombie(self) -> bool:
        return self.state in ("Z", "X")


def proc_stat(pid: int) -> ProcStat | None:
    """None when the process does not exist (or /proc is not there)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in field 2 may contain spaces and parens: split after its last closing paren.
    fields = text.rsplit(")", 1)[1].split()
    return ProcStat(state=fields[0], start_ticks=fields[19])
