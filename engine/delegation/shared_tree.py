"""The shared-tree rule: a run only changes a file that still holds bytes the run put there or started from.

Per output file the write journal (engine/store/journal.py) knows the base (what the file held when the prompt was
packed: what the model saw), the newest content the run generated, and every content the run put on disk. Compared by
hash, never by mtime:
- before applying an attempt, the file must hold the base or the content the run applied last (after a crash: or the
  attempt's own content, already there);
- before a rollback, it must hold the base (nothing to do), a content the run applied, or the attempt's content.
Anything else is a conflict: the file is left alone, the run's version is kept under
`.claude/workflow/conflicts/<run_id>/<path>`, and the run ends with the conflict reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from engine.delegation.paths import resolve_inside
from engine.delegation.writes import keep_version, on_disk, remove_created_dirs, replace_if
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
    "read_bases",
    "rollback_action",
    "rollback_file",
]


def read_bases(root: Path, paths: Sequence[str]) -> dict[str, bytes | None]:
    """What each output holds now (None: no file): the base the run's later writes are compared with."""
    bases: dict[str, bytes | None] = {}
    for path in paths:
        try:
            bases[path] = resolve_inside(root, path, field="output_files.path").read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            bases[path] = None
    return bases


def conflict_message(conflicts: Sequence[Conflict]) -> str:
    parts = [f"{c['path']} was {c['found']} by someone else" + (f" (the run's version is kept at {c['kept_at']})"
                                                                   if c["kept_at"] else "") for c in conflicts]
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
    if current == ABSENT:
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


def conflict_step(root: Path, workflow_dir: Path, run_id: str, w: FileWrite, *, during: str) -> Step:
    """Report `w` as a conflict found `during` a step, without touching the file (the run's version kept aside)."""
    target = resolve_inside(root, w.path, field="output_files.path")
    return _conflict(root, workflow_dir, run_id, w, target, during)


def _conflict(root: Path, workflow_dir: Path, run_id: str, w: FileWrite, target: Path, during: str) -> Step:
    current = on_disk(target)
    kept = keep_version(workflow_dir, run_id, w.path, w.content)
    return Step(w.path, done=False, conflict=conflict_of(current, w, during=during, kept_at=kept))


def apply_file(root: Path, workflow_dir: Path, run_id: str, w: FileWrite) -> Step:
    """Put the attempt's content in place, unless the file holds something the run did not start from or write."""
    assert w.content is not None and w.content_hash is not None
    target = resolve_inside(root, w.path, field="output_files.path")
    action = apply_action(on_disk(target), w)
    if action is Action.NOTHING:
        return Step(w.path, done=True, applied_hash=w.content_hash)
    if action is Action.WRITE:
        # The same rule again, right before the rename: someone may have written since the look above.
        wrote, created = replace_if(target, w.content,
                                    expected=lambda current: apply_action(current, w) is not Action.CONFLICT)
        if wrote:
            return Step(w.path, done=True, applied_hash=w.content_hash, created=_relative_dirs(root, created))
    return _conflict(root, workflow_dir, run_id, w, target, "writing")


def rollback_file(root: Path, workflow_dir: Path, run_id: str, w: FileWrite) -> Step:
    """Put the base back (or remove a file the run created), unless someone else changed the file since."""
    target = resolve_inside(root, w.path, field="output_files.path")
    action = rollback_action(on_disk(target), w)
    if action is Action.WRITE:
        restored, _ = replace_if(target, w.previous if w.existed else None,
                                 expected=lambda current: rollback_action(current, w) is Action.WRITE)
        if not restored and on_disk(target) != w.base_hash:
            return _conflict(root, workflow_dir, run_id, w, target, "rolling_back")
    elif action is Action.CONFLICT:
        return _conflict(root, workflow_dir, run_id, w, target, "rolling_back")
    remove_created_dirs(Path(root).resolve(), w.created_dirs)
    return Step(w.path, done=True)
