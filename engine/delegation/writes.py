"""The files a run writes: atomic writes, and applying or rolling back the run's write journal.

Every write of a run is journaled in the store's write journal (`Transaction.add_file_write`) before it happens: the
original content of each target (or its absence) from the run's first attempt, and the newest content. Re-applying the
journal and rolling it back are both idempotent, so a crash at any point can be finished by recovery.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from engine.delegation.paths import resolve_inside
from engine.store.db import FileWrite, Transaction

__all__ = ["TEMP_MARK", "apply_journal", "atomic_write", "journal_writes", "remove_stale_temps", "rollback_journal"]

log = structlog.get_logger(__name__)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TEMP_MARK = "local-llm-"
"""In the temp file's name (`.<name>.local-llm-<random>.tmp`), so the leftovers of a killed write are told apart."""


def remove_stale_temps(path: Path) -> list[str]:
    """Delete what a write of `path` killed between its temp file and the rename left behind. Only one run at a
    time writes a path (the runner's path locks), so a temp file of `path` seen by its writer is a leftover."""
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.{TEMP_MARK}*.tmp"))
    except OSError:
        return removed
    for leftover in candidates:
        try:
            leftover.unlink()
            removed.append(leftover.name)
        except FileNotFoundError:
            pass
    if removed:
        log.info("removed the temp files of an interrupted write", path=str(path), files=removed)
    return removed


def atomic_write(path: Path, content: bytes) -> None:
    """Write `content` to `path` so a reader sees the old file or the new one, never half of one.

    Temp file in the same directory (same filesystem, so the rename is atomic), fsync, rename, fsync the directory
    (so the rename itself survives a crash). The mode of a replaced file is kept.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode: int | None = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{TEMP_MARK}", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def journal_writes(
    tx: Transaction, run_id: str, root: Path, files: Sequence[tuple[str, bytes]], *, attempt: int
) -> None:
    """Record, inside the caller's transaction, what each target holds now (first attempt only) and its new content."""
    known = {w.path for w in tx.file_writes(run_id)}
    for relative, content in files:
        if relative in known:
            tx.replace_file_content(run_id, relative, content=content, attempt=attempt)
            continue
        target = resolve_inside(root, relative, field="output_files.path")
        existed = target.is_file()
        tx.add_file_write(run_id, relative, existed=existed, previous=target.read_bytes() if existed else None,
                          content=content, attempt=attempt)


def _current(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def apply_journal(writes: Iterable[FileWrite], root: Path) -> list[str]:
    """Write every journaled new content (skipping files that already hold it); returns the paths written."""
    written = []
    for w in writes:
        if w.content is None:
            continue
        target = resolve_inside(root, w.path, field="output_files.path")
        remove_stale_temps(target)
        if _current(target) != w.content:
            atomic_write(target, w.content)
        written.append(w.path)
    return written


def rollback_journal(writes: Iterable[FileWrite], root: Path) -> list[str]:
    """Put every target back to its original bytes, or remove it if it did not exist; idempotent."""
    restored = []
    for w in writes:
        target = resolve_inside(root, w.path, field="output_files.path")
        remove_stale_temps(target)
        if w.existed:
            if _current(target) != w.previous:
                atomic_write(target, w.previous or b"")
        else:
            try:
                target.unlink()
                _fsync_dir(target.parent)
            except FileNotFoundError:
                pass
        restored.append(w.path)
    log.info("rolled back", paths=restored)
    return restored
