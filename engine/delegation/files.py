"""Files a delegation reads and writes: safe path resolution, secret detection, atomic and journaled writes.

Every write of a run is journaled in the store's write journal (`Transaction.add_file_write`) before it happens: the original content of
each target (or its absence) from the run's first attempt, and the newest content. Re-applying the journal and
rolling it back are both idempotent, so a crash at any point can be finished by recovery.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

import structlog

from engine.errors import InvalidArgument, UserError
from engine.store.db import FileWrite, Transaction

__all__ = [
    "SecretFile",
    "apply_journal",
    "atomic_write",
    "writable_target",
    "journal_writes",
    "looks_secret",
    "read_text_file",
    "remove_stale_temps",
    "resolve_inside",
    "rollback_journal",
]

log = structlog.get_logger(__name__)

_SECRET_NAMES = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "id_rsa*",
    "id_dsa*", "id_ecdsa*", "id_ed25519*", "*credentials*", "*secret*", ".netrc", ".pgpass", ".npmrc", ".pypirc",
    "*.kdbx", "htpasswd", ".htpasswd", "*.gpg", "*.asc",
)
NAME_MAX, PATH_MAX, MAX_DEPTH = 255, 4000, 64
"""Longest file name, relative path (bytes) and directory depth accepted in a path argument."""
OS_PATH_MAX = 4096
"""Linux's PATH_MAX, for the absolute path (the project root included)."""
WORKFLOW_DIR = PurePosixPath(".claude", "workflow")
"""Where the engine keeps its journal and logs (engine.project.Project.workflow_dir)."""
_SECRET_DIRS = {".ssh", ".gnupg", ".aws", ".docker", ".kube"}
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")


class SecretFile(UserError):
    pass


def resolve_inside(root: Path, relative: str, *, field: str) -> Path:
    """`relative` resolved inside `root`, following every existing symlink; refuses anything that leaves root."""
    expected = "a relative path inside the project (no absolute path, no '..', no symlink leading out)"
    if not isinstance(relative, str) or not relative.strip():
        raise InvalidArgument(field, expected, relative)
    if "\x00" in relative:
        raise InvalidArgument(field, expected + ", without NUL bytes", relative)
    try:
        encoded = relative.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): no file system can name it
        raise InvalidArgument(field, expected + ", in valid UTF-8", relative) from None
    names = relative.replace("\\", "/").split("/")
    if len(encoded) > PATH_MAX or any(len(name.encode("utf-8")) > NAME_MAX for name in names):
        # Refused here, not by the OS later: an over-long name fails stat() with ENAMETOOLONG, which is no UserError.
        raise InvalidArgument(field, expected + f", of at most {PATH_MAX} bytes with names of at most {NAME_MAX}",
                              relative)
    if len([name for name in names if name not in ("", ".")]) > MAX_DEPTH:
        # 1500 nested directories are legal, but no project has them, and tools (shutil.rmtree) fail on them.
        raise InvalidArgument(field, expected + f", at most {MAX_DEPTH} directories deep", relative)
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", relative):
        raise InvalidArgument(field, expected, relative)
    if ".." in pure.parts:
        raise InvalidArgument(field, expected, relative)
    real_root = Path(os.path.realpath(root))
    if len(str(real_root / pure).encode("utf-8")) >= OS_PATH_MAX:
        raise InvalidArgument(field, expected + f"; inside {real_root} it is longer than the system allows",
                              relative)
    target = Path(os.path.realpath(real_root / pure))
    if target != real_root and real_root not in target.parents:
        raise InvalidArgument(field, expected + f"; it resolves to {target}", relative)
    if target == real_root:
        raise InvalidArgument(field, "a file path, not the project root", relative)
    return target


def writable_target(root: Path, relative: str, *, field: str) -> Path:
    """`relative` as a file a run may write: inside root (see resolve_inside), not a directory, not below a file,
    and not in the engine's own state directory (its journal must never be a model's output)."""
    target = resolve_inside(root, relative, field=field)
    real_root = Path(os.path.realpath(root))
    if target.is_dir():
        raise InvalidArgument(field, "a file path, not a directory", relative)
    if real_root / WORKFLOW_DIR in (target, *target.parents):
        raise InvalidArgument(field, f"a path outside {WORKFLOW_DIR}/ (the engine's own state)", relative)
    parent = target.parent
    while parent != real_root and not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidArgument(field, f"a path below directories, but {parent.relative_to(real_root)} is a file",
                              relative)
    return target


def looks_secret(path: Path, *, head: bytes | None = None) -> bool:
    """Names and contents that usually hold secrets (.env, private keys, credentials)."""
    name = path.name.lower()
    if any(fnmatch.fnmatch(name, pattern) for pattern in _SECRET_NAMES):
        return True
    if _SECRET_DIRS & {p.lower() for p in path.parts[:-1]}:
        return True
    return head is not None and _PRIVATE_KEY.search(head) is not None


def read_text_file(root: Path, relative: str, *, field: str, allow_secrets: bool = False) -> str:
    """A context file's text: inside root, UTF-8 text, and not a secret unless explicitly allowed."""
    path = resolve_inside(root, relative, field=field)
    try:
        if not path.is_file():
            raise InvalidArgument(field, "an existing file inside the project", relative)
        data = path.read_bytes()
    except OSError as exc:  # unreadable (permissions, a FIFO's error, ...): say which file, not a bare OSError
        raise InvalidArgument(field, f"a readable file ({exc.strerror or exc})", relative) from None
    if not allow_secrets and looks_secret(path.relative_to(Path(os.path.realpath(root))), head=data[:65536]):
        raise SecretFile(
            f"{field}: {relative!r} looks like a secret (.env, private key, credentials) and is not sent to the "
            "model; remove it from the context files, or pass allow_secrets=true (--allow-secrets) if it is safe"
        )
    if b"\x00" in data[:8192]:
        raise InvalidArgument(field, "a UTF-8 text file (this one is binary)", relative)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(field, f"a UTF-8 text file (byte {exc.start} is not UTF-8)", relative) from None


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
