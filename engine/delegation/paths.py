"""Paths a delegation names: resolved inside the project root through every symlink, and checked as outputs."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from engine.errors import InvalidArgument

__all__ = ["MAX_DEPTH", "NAME_MAX", "PATH_MAX", "WORKFLOW_DIR", "resolve_inside", "writable_target"]

NAME_MAX, PATH_MAX, MAX_DEPTH = 255, 4000, 64
"""Longest file name, relative path (bytes) and directory depth accepted in a path argument."""
OS_PATH_MAX = 4096
"""Linux's PATH_MAX, for the absolute path (the project root included)."""
WORKFLOW_DIR = PurePosixPath(".claude", "workflow")
"""Where the engine keeps its journal and logs (engine.project.Project.workflow_dir)."""


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
