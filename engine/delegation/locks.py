"""Output locks: one run at a time writes a path, across the processes that share a project."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

__all__ = ["PathLocks"]

RETRY_S = 0.05


class PathLocks:
    """Exclusive locks on output files, across processes and within one (flock on lock files, one per resolved path,
    reused and never unlinked: unlinking one another process may be opening would let two holders in; released by
    the OS on a crash). Callers pass the resolved real path, so aliases of one file take one lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @asynccontextmanager
    async def hold(self, paths: Sequence[str]) -> AsyncIterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        fds: list[int] = []
        try:
            for path in sorted(set(paths)):  # one global order: two runs never wait on each other in a cycle
                name = hashlib.sha256(path.encode()).hexdigest()[:32] + ".lock"
                fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o644)
                fds.append(fd)
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        # The holder may be another process: flock has no async wait, so look again shortly.
                        await anyio.sleep(RETRY_S)
            yield
        finally:
            for fd in fds:
                os.close(fd)  # closing the descriptor releases its flock
