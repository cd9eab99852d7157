"""Writing files in a tree that others edit at the same time: atomic replacement guarded by what the file holds
right before the rename, the directories a write created, and the run's version kept aside on a conflict.

Which versions a run may replace is decided by engine/delegation/shared_tree.py; this module only does the IO."""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from engine.delegation.paths import NAME_MAX
from engine.store.journal import content_hash

__all__ = [
    "NOT_A_FILE",
    "REDIRECTED",
    "TEMP_MARK",
    "NotRegular",
    "atomic_write",
    "keep_version",
    "on_disk",
    "read_regular",
    "remove_created_dirs",
    "remove_stale_temps",
    "replace_if",
]

log = structlog.get_logger(__name__)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TEMP_MARK = "local-llm-"
"""In the temp file's name (`.<name>.local-llm-<random>.tmp`), so the leftovers of a killed write are told apart."""
_TEMP_EXTRA = len(f"..{TEMP_MARK}12345678.tmp")
"""What a temp file's name adds to the file's (mkstemp's random part is 8 characters)."""
NOT_A_FILE = "not-a-regular-file"
"""on_disk's answer for a directory, FIFO, socket, device or symlink at the path: never a content hash."""
REDIRECTED = "redirected"
"""For a path that now resolves to a protected place or out of the project (engine.delegation.shared_tree)."""


def _temp_prefix(name: str) -> str:
    """`.<name>.local-llm-`, with `name` cut (and told apart by a digest) where the whole would pass NAME_MAX: a
    255-byte name that the checks accept can be written too."""
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) + _TEMP_EXTRA <= NAME_MAX:
        return f".{name}.{TEMP_MARK}"
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    room = NAME_MAX - _TEMP_EXTRA - len(digest) - 1
    return f".{encoded[:room].decode('utf-8', 'ignore')}~{digest}.{TEMP_MARK}"


def remove_stale_temps(path: Path) -> list[str]:
    """Delete what a write of `path` killed between its temp file and the rename left behind. Only one run at a
    time writes a path (the runner's path locks), so a temp file of `path` seen by its writer is a leftover."""
    removed: list[str] = []
    try:
        candidates = list(path.parent.glob(f"{glob.escape(_temp_prefix(path.name))}*.tmp"))
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


def _missing_dirs(directory: Path) -> list[Path]:
    """`directory` and its ancestors that do not exist yet, deepest first (what a write there would create)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    return missing


def _temp_with(path: Path, content: bytes) -> str:
    """A fsynced temp file beside `path` holding `content`, with the mode `path` has (or a new file's)."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_regular(path: Path) -> bytes | None:
    """What the regular file at `path` holds (None: no file), or NotRegular for anything else there. Never opens a
    FIFO or device for real (that could block the event loop for good, or act): looked at with lstat first, opened
    without following a symlink and without blocking, and checked again on the open file."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise NotRegular(path)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink put there since the look
            raise NotRegular(path) from exc
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise NotRegular(path)
        return handle.read()


class NotRegular(OSError):
    """Something other than a regular file is where a file was expected."""


def on_disk(path: Path) -> str:
    """The hash of what `path` holds now (journal.ABSENT when there is no file, NOT_A_FILE when what is there is
    not a regular file)."""
    try:
        return content_hash(read_regular(path))
    except NotRegular:
        return NOT_A_FILE


def replace_if(path: Path, content: bytes | None, *, expected: Callable[[str], bool]) -> tuple[bool, list[Path]]:
    """Put `content` at `path` (None: remove the file) unless what is there stopped being `expected`.

    Everything slow (the temp file, its fsync) happens first; the file is read and hashed right before the atomic
    rename (or the unlink), so the window in which someone else's write can still be replaced is that of one read,
    one hash and one rename (see docs/ARCHITECTURE.md, "The working tree is shared"). Returns whether it acted, and
    the directories it created."""
    created = _missing_dirs(path.parent) if content is not None else []
    if content is None:
        if path.parent.exists():
            remove_stale_temps(path)
        if not expected(on_disk(path)):
            return False, []
        _unlink_quietly(path)
        if path.parent.exists():
            _fsync_dir(path.parent)
        return True, []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file where a directory must be: someone else's, left alone
        return False, []
    remove_stale_temps(path)
    tmp = _temp_with(path, content)
    if not expected(on_disk(path)):
        _unlink_quietly(tmp)
        return False, created
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)
    return True, created


def atomic_write(path: Path, content: bytes) -> None:
    """Write `content` to `path` so a reader sees the old file or the new one, never half of one (temp file in the
    same directory, fsync, rename, fsync the directory; the mode of a replaced file is kept). For the engine's own
    files: a run's outputs go through `replace_if`."""
    replace_if(path, content, expected=lambda _current: True)


def remove_created_dirs(root: Path, dirs: Iterable[str]) -> None:
    """Remove directories a run created, deepest first, where they are empty again (someone else's file keeps one)."""
    for relative in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
        if os.path.realpath(root / relative) != str(root / relative):
            continue  # a symlink came on the way since: what it leads to is not a directory the run made
        try:
            os.rmdir(root / relative)
        except OSError:
            pass


def keep_version(workflow_dir: Path, run_id: str, relative: str, content: bytes | None) -> str | None:
    """Keep the run's version of a file it could not write under `conflicts/<run_id>/<path>`; its path relative to
    the project's workflow directory, or None when the run had no content for it."""
    if content is None:
        return None
    target = workflow_dir / "conflicts" / run_id / relative
    atomic_write(target, content)
    return str(target.relative_to(workflow_dir.parent.parent))
