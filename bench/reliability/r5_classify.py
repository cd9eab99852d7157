"""R5's verdicts, from the traced events (bench/reliability/r5_trace.py) and what the runs ended with.

Each editor edit is, by what touched its file next:

- `kept`: the editor itself (a later edit) or nothing (it is still there at the end);
- the engine, after a check that came after the edit and saw it (the edit's hash), then:
  - `base` when the edit was made before the run read its base at packing: what the model saw, the run's input;
  - `reverted` when the edit put back the run's base bytes after packing (a deleted new file, a `git checkout`):
    by hash the engine cannot tell them from the base, and the documented rule lets a run replace its base;
  - `lost` otherwise: the engine saw someone else's change and replaced or removed it (must never happen);
- the engine, whose last check of the file came before the edit: `in_window`, the documented window between the
  check and the rename (docs/ARCHITECTURE.md, "The working tree is shared");
- `unguarded`: the engine renamed or removed without a check of its own right before (must never happen);
- `unexplained`: the check after the edit saw another version: a write no event accounts for (an instrument gap).

A conflict is found when a run's check, while it was writing (it meant to write the file) or rolling back a file it
had written, saw a version that is neither its base nor one it renamed into place. Every conflict found must be in
the run's `conflicts`, and nothing else may be.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.reliability.r5_trace import Event
from engine.store.journal import ABSENT, content_hash

__all__ = [
    "EDIT_CLASSES",
    "LOSSES",
    "RunEnd",
    "Verdicts",
    "classify",
    "final_hashes",
]

EDIT_CLASSES = ("kept", "base", "reverted", "in_window", "lost", "unguarded", "unexplained")
LOSSES = ("lost", "unguarded", "unexplained")
MUTATIONS = ("replace", "unlink")
WRITERS = ("setup", "edit", *MUTATIONS)
FAILED = ("failed", "cancelled")


@dataclass(frozen=True)
class RunEnd:
    """What a run ended with (from the store, after everything stopped)."""

    run: str
    state: str
    bases: Mapping[str, str]
    """Output path -> the base hash journaled at packing (missing: never packed)."""
    contents: Mapping[str, bytes | None]
    """Output path -> the newest content the run generated (None: none)."""
    conflicts: Sequence[Mapping[str, Any]]


@dataclass
class Verdicts:
    edits: Counter[str] = field(default_factory=Counter)
    edits_by_state: Counter[str] = field(default_factory=Counter)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Run id (or "" for the tree as a whole) -> what is wrong."""
    conflicts_found: int = 0
    conflicts_reported: int = 0
    window_ns: list[int] = field(default_factory=list)
    """Per engine rename/unlink of an output: from the end of its guard check to the start of the syscall."""
    samples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """A few edits of each verdict but `kept`, described (what the edit was, what overwrote it)."""


def final_hashes(root: Path, paths: Sequence[str]) -> dict[str, str]:
    found = {}
    for path in paths:
        try:
            found[path] = content_hash((root / path).read_bytes())
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            found[path] = ABSENT
    return found


def classify(events: Sequence[Event], runs: Mapping[str, RunEnd], final: Mapping[str, str]) -> Verdicts:
    """`events` in the order they happened; `final`: what each path holds at the end."""
    verdicts = Verdicts()
    by_path: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    for position, event in enumerate(events):
        if event.path:
            by_path[event.path].append((position, event))
    for path, timeline in by_path.items():
        _edits(path, timeline, runs, verdicts)
        _tree(path, timeline, runs, final, verdicts)
    _conflicts(by_path, runs, verdicts)
    return verdicts


def _base_read_at(timeline: Sequence[tuple[int, Event]], run: RunEnd | None, path: str) -> int | None:
    """Where the run read the base it journaled (the last read with that hash: a packing killed before its commit
    read once more)."""
    if run is None or path not in run.bases:
        return None
    reads = [p for p, e in timeline if e.kind == "base" and e.run == run.run and e.hash == run.bases[path]]
    return reads[-1] if reads else None


def _edits(path: str, timeline: Sequence[tuple[int, Event]], runs: Mapping[str, RunEnd], verdicts: Verdicts) -> None:
    for i, (position, edit) in enumerate(timeline):
        if edit.kind != "edit":
            continue
        verdicts.edits_by_state[edit.during or "no run"] += 1
        later = timeline[i + 1:]
        writer = next(((p, e) for p, e in later if e.kind in WRITERS), None)
        if writer is None or writer[1].kind in ("setup", "edit"):
            verdicts.edits["kept"] += 1
            continue
        verdict = _overwritten(path, timeline, position, edit, writer, runs)
        verdicts.edits[verdict] += 1
        what = (f"{path}: the editor's edit ({edit.label}, while {edit.during or 'no run'}) was "
                f"{'removed' if writer[1].kind == 'unlink' else 'replaced'} by the run while {writer[1].during}")
        if len(verdicts.samples[verdict]) < 3:
            verdicts.samples[verdict].append(what)
        if verdict in LOSSES:
            verdicts.problems[writer[1].run].append(f"{what}: {verdict}")


def _overwritten(path: str, timeline: Sequence[tuple[int, Event]], position: int, edit: Event,
                 writer: tuple[int, Event], runs: Mapping[str, RunEnd]) -> str:
    at, mutation = writer
    check = next(((p, e) for p, e in reversed(timeline) if p < at and e.kind == "check"), None)
    if check is None or check[1].run != mutation.run or not check[1].guard:
        return "unguarded"
    if check[0] < position:
        return "in_window"
    if check[1].hash != edit.hash:
        return "unexplained"
    run = runs.get(mutation.run)
    if run is None or run.bases.get(path) != edit.hash:
        return "lost"
    read_at = _base_read_at(timeline, run, path)
    return "base" if read_at is not None and position < read_at else "reverted"


def _tree(path: str, timeline: Sequence[tuple[int, Event]], runs: Mapping[str, RunEnd], final: Mapping[str, str],
          verdicts: Verdicts) -> None:
    """What the file holds at the end is what its last recorded writer put there; never a failed run's bytes."""
    for i, (_, event) in enumerate(timeline):
        if event.kind in MUTATIONS:
            check = next((e for _, e in reversed(timeline[:i]) if e.kind == "check"), None)
            if check is not None and check.guard and check.run == event.run:
                verdicts.window_ns.append(event.ns - check.ns)
    writers = [e for _, e in timeline if e.kind in WRITERS]
    if not writers or path not in final:
        return
    last = writers[-1]
    if final[path] != last.hash:
        verdicts.problems[""].append(f"{path} holds {final[path][:16]}, its last recorded writer ({last.kind}) "
                                     f"put {last.hash[:16]} there")
    run = runs.get(last.run) if last.kind in MUTATIONS else None
    if run is not None and run.state in FAILED and last.hash != run.bases.get(path) and not any(
            c.get("path") == path for c in run.conflicts):
        verdicts.problems[run.run].append(f"{path} holds the bytes of a run that ended {run.state}")


def _conflicts(by_path: Mapping[str, Sequence[tuple[int, Event]]], runs: Mapping[str, RunEnd],
               verdicts: Verdicts) -> None:
    found: dict[tuple[str, str], tuple[int, Event]] = {}
    for path, timeline in by_path.items():
        own: dict[str, set[str]] = defaultdict(set)
        for position, event in timeline:
            if event.kind in MUTATIONS and event.run:
                own[event.run].add(event.hash)
            if event.kind != "check" or event.during not in ("writing", "rolling_back") or event.run not in runs:
                continue
            base = runs[event.run].bases.get(path)
            if event.hash == base or event.hash in own[event.run]:
                continue
            wrote = bool(own[event.run] - {ABSENT})
            if event.during == "writing" or wrote:
                found[(event.run, path)] = (position, event)  # the last one: the check the report was made from
    verdicts.conflicts_found += len(found)
    for run in runs.values():
        reported = [c["path"] for c in run.conflicts]
        verdicts.conflicts_reported += len(reported)
        if len(set(reported)) != len(reported):
            verdicts.problems[run.run].append(f"a conflict reported twice: {reported}")
        for path in set(reported) - {p for r, p in found if r == run.run}:
            verdicts.problems[run.run].append(f"{path}: a conflict reported, but no check of the run saw someone "
                                              "else's version")
    for (run_id, path), (position, check) in found.items():
        run = runs[run_id]
        conflict = next((c for c in run.conflicts if c["path"] == path), None)
        if conflict is None:
            verdicts.problems[run_id].append(f"{path}: the run saw someone else's version while {check.during} but "
                                             "reported no conflict")
            continue
        expected = _found(check, run, path, own_applied=_wrote(by_path[path], run_id, before=position))
        if (conflict.get("found"), conflict.get("during")) != (expected, check.during):
            verdicts.problems[run_id].append(
                f"{path}: reported found={conflict.get('found')} during={conflict.get('during')}, the check saw "
                f"{expected} during {check.during}")


def _wrote(timeline: Sequence[tuple[int, Event]], run_id: str, *, before: int) -> bool:
    return any(e.kind == "replace" and e.run == run_id for p, e in timeline if p < before)


def _found(check: Event, run: RunEnd, path: str, *, own_applied: bool) -> str:
    if check.hash == ABSENT:
        return "deleted"
    if run.bases.get(path) == ABSENT and not own_applied:
        return "created"
    return "changed"
