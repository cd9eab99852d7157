"""The shared-tree rule: a run only changes a file that still holds bytes the run put there or started from.

Per output file the write journal (engine/store/journal.py) knows the base (what the file held when the prompt was
packed: what the model saw), the newest content the run generated, and every content the run put on disk. Compared by
hash, never by mtime:
- before applying an attempt, the file must hold the base or the content the run applied last (after a crash: or the
  attempt's own content, already there);
- before a rollback, it must hold the base (nothing to do), a content the run applied, or the attempt's content.
Anything else is a conflict: the file is left alone, the run's version is kept under
`.claude/workflow/conflicts/<run_id>/<path>`, and the run ends with the conflict reported. So is an output that is
no longer a regular file (a directory, FIFO, socket or device put there: `not_a_file`), and one whose path now
resolves out of the project or to a protected path (a symlink put on its way during the run, or between a kill and
the resume: `redirected`): each look, write, rename and rollback resolves the real path again and checks it against
the protected paths (`locate`) first, and the rename happens only if no symlink came on the way since.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import structlog

from engine.delegation.paths import Protection, file_kind, output_identity, resolve_inside
from engine.delegation.writes import (
    NOT_A_FILE,
    REDIRECTED,
    NotRegular,
    keep_version,
    on_disk,
    read_regular,
    remove_created_dirs,
    replace_if,
)
from engine.errors import InvalidArgument
from engine.store.journal import ABSENT, FileWrite
from states import Conflict

__all__ = [
    "Action",
    "Step",
    "apply_action",
    "apply_file",
    "conflict_message",
    "conflict_of",
    "conflict_step",
    "locate",
    "look",
    "read_bases",
    "rollback_action",
    "rollback_file",
]


log = structlog.get_logger(__name__)


def read_bases(root: Path, paths: Sequence[str]) -> dict[str, bytes | None]:
    """What each output holds now (None: no file): the base the run's later writes are compared with. Something
    other than a regular file there now is refused (never opened: a FIFO would block for good)."""
    bases: dict[str, bytes | None] = {}
    for path in paths:
        target = resolve_inside(root, path, field="output_files.path")
        try:
            bases[path] = read_regular(target)
        except NotRegular:
            raise InvalidArgument("output_files.path", f"a regular file (or none); {path!r} is now "
                                  f"{file_kind(target) or 'not a regular file'}", path) from None
    return bases


def locate(root: Path, relative: str, *, allow_config_writes: bool) -> Path | None:
    """The real path `relative` resolves to now, checked as an output again (check_output's rules on the real path);
    None when it now leads out of the project or to a protected path."""
    try:
        output = output_identity(root, relative, field="output_files.path")
    except InvalidArgument as exc:
        log.warning("an output no longer resolves inside the project", path=relative, problem=str(exc))
        return None
    found = Protection.of(root).rule_for(output)
    if found is not None and not (found[0].opt_in and allow_config_writes):
        log.warning("an output now resolves to a protected path", path=relative, real=str(output.real),
                    rule=found[0].pattern, how=found[1])
        return None
    return output.real


def look(root: Path, relative: str, *, allow_config_writes: bool) -> tuple[Path | None, str]:
    """Where an output is now (locate) and what it holds: a content hash, ABSENT, NOT_A_FILE or REDIRECTED."""
    target = locate(root, relative, allow_config_writes=allow_config_writes)
    return target, REDIRECTED if target is None else on_disk(target)


def _unmoved(target: Path) -> bool:
    """No symlink came on the way to `target` (a real path) since it was located: right before a rename."""
    return os.path.realpath(target) == str(target)


_FOUND = {"not_a_file": "replaced by something that is not a regular file (a directory, FIFO, socket or device)",
          "redirected": "redirected (a symlink now leads it out of the project or to a protected path)"}


def conflict_message(conflicts: Sequence[Conflict]) -> str:
    parts = [f"{c['path']} was {_FOUND.get(c['found'], c['found'])} by someone else"
             + (f" (the run's version is kept at {c['kept_at']})" if c["kept_at"] else "") for c in conflicts]
    return ("conflict: " + "; ".join(parts) + ". The run left those files alone and wrote nothing over them; look at "
            "the changes, then delegate again on the files as they are now")


class Action(Enum):
    WRITE = "write"
    NOTHING = "nothing"
    CONFLICT = "conflict"


def apply_action(current: str, w: FileWrite) -> Action:
    if current == w.content_hash:
        return Action.NOTHING  # already there (a crash came after the rename, before the journal said so)
    if current == w.base_hash or current == w.last_applied:
        return Action.WRITE
    return Action.CONFLICT


def rollback_action(current: str, w: FileWrite) -> Action:
    if current == w.base_hash:
        return Action.NOTHING
    ours = set(w.applied) | ({w.content_hash} if w.content_hash else set())
    if current in ours:
        return Action.WRITE
    if not w.applied and w.status in ("base", "pending"):
        return Action.NOTHING  # the run never put anything here: whatever is there is someone else's, not ours to undo
    return Action.CONFLICT


def conflict_of(current: str, w: FileWrite, *, during: str, kept_at: str | None) -> Conflict:
    if current in (NOT_A_FILE, REDIRECTED):
        found = "not_a_file" if current == NOT_A_FILE else "redirected"
    elif current == ABSENT:
        found = "deleted"
    elif w.base_hash == ABSENT and not w.applied:
        found = "created"
    else:
        found = "changed"
    return {"path": w.path, "found": found, "during": during, "kept_at": kept_at}


@dataclass(frozen=True)
class Step:
    """What happened to one file: `done` (it holds what the run wanted), or a conflict; `created` directories."""

    path: str
    done: bool
    applied_hash: str | None = None
    created: tuple[str, ...] = ()
    conflict: Conflict | None = None


def _relative_dirs(root: Path, dirs: list[Path]) -> tuple[str, ...]:
    real_root = Path(root).resolve()
    return tuple(str(d.relative_to(real_root)) for d in dirs)


def conflict_step(workflow_dir: Path, run_id: str, w: FileWrite, *, seen: str, during: str) -> Step:
    """Report `w` as a conflict found `during` a step by a look that saw `seen` (its hash, or ABSENT, NOT_A_FILE,
    REDIRECTED), without touching the file (the run's version kept aside)."""
    return _conflict(workflow_dir, run_id, w, seen, during)


def _conflict(workflow_dir: Path, run_id: str, w: FileWrite, current: str, during: str) -> Step:
    """`current`: what the check that refused the write saw (reported as such: a later look may see yet another
    version, and the report must say why the run stopped)."""
    kept = keep_version(workflow_dir, run_id, w.path, w.content)
    return Step(w.path, done=False, conflict=conflict_of(current, w, during=during, kept_at=kept))


class _Guard:
    """The check right before a rename, remembering what it saw (None: it did not see the file: never called, or a
    symlink came on the way, and only a new look can say where the path leads now)."""

    def __init__(self, target: Path, allowed: Callable[[str], bool]) -> None:
        self.target = target
        self.allowed = allowed
        self.seen: str | None = None

    def __call__(self, current: str) -> bool:
        if not _unmoved(self.target):
            return False
        self.seen = current
        return self.allowed(current)

    def found(self, root: Path, relative: str, *, allow_config_writes: bool) -> str:
        if self.seen is not None:
            return self.seen
        return look(root, relative, allow_config_writes=allow_config_writes)[1]


def apply_file(root: Path, workflow_dir: Path, run_id: str, w: FileWrite, *, allow_config_writes: bool = False
               ) -> Step:
    """Put the attempt's content in place, unless the file holds something the run did not start from or write,
    or its path now leads somewhere the run may not write (see the module's docstring)."""
    assert w.content is not None and w.content_hash is not None
    target, current = look(root, w.path, allow_config_writes=allow_config_writes)
    action = apply_action(current, w)
    if action is Action.NOTHING:
        return Step(w.path, done=True, applied_hash=w.content_hash)
    if action is Action.WRITE and target is not None:
        # The same rule again, right before the rename: someone may have written since the look above.
        guard = _Guard(target, lambda seen: apply_action(seen, w) is not Action.CONFLICT)
        wrote, created = replace_if(target, w.content, expected=guard)
        if wrote:
            return Step(w.path, done=True, applied_hash=w.content_hash, created=_relative_dirs(root, created))
        current = guard.found(root, w.path, allow_config_writes=allow_config_writes)
    return _conflict(workflow_dir, run_id, w, current, "writing")


def rollback_file(root: Path, workflow_dir: Path, run_id: str, w: FileWrite, *, allow_config_writes: bool = False
                  ) -> Step:
    """Put the base back (or remove a file the run created), unless someone else changed the file since or its
    path now leads somewhere the run may not write."""
    target, current = look(root, w.path, allow_config_writes=allow_config_writes)
    action = rollback_action(current, w)
    if action is Action.WRITE and target is not None:
        guard = _Guard(target, lambda seen: rollback_action(seen, w) is Action.WRITE)
        restored, _ = replace_if(target, w.previous if w.existed else None, expected=guard)
        if not restored:
            found = guard.found(root, w.path, allow_config_writes=allow_config_writes)
            if found != w.base_hash:
                return _conflict(workflow_dir, run_id, w, found, "rolling_back")
    elif action is not Action.NOTHING:
        return _conflict(workflow_dir, run_id, w, current, "rolling_back")
    remove_created_dirs(Path(root).resolve(), w.created_dirs)
    return Step(w.path, done=True)
