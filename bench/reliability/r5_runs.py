"""R5: what each sub-case checks of its runs once they ended (every view agrees on the conflicts, each kept version is
there with the run's bytes), and the figures summed over the sub-cases."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.reliability.common import journal_problems, log_problems
from bench.reliability.r5_classify import LOSSES, RunEnd, Verdicts
from engine.delegation.metrics import read_log
from engine.delegation.views import result_view, run_view
from engine.project import Project
from engine.store.db import Store
from states import DELEGATION, RunData

__all__ = ["Figures", "run_end", "view_problems"]


def run_end(store: Store, run_id: str) -> RunEnd:
    record = store.get(run_id)
    writes = store.file_writes(run_id)
    return RunEnd(run=run_id, state=record.state, bases={w.path: w.base_hash for w in writes},
                  contents={w.path: w.content for w in writes},
                  conflicts=list(RunData.from_json(record.data).conflicts))


def view_problems(store: Store, root: Path, run_id: str) -> list[str]:
    """The run ended, and its conflicts are the same in its result, its `run` view and its delegation-log line; each
    one's `kept_at` holds the run's version; the error says so; the journal and the log line are consistent."""
    record = store.get(run_id)
    if record.state not in DELEGATION.terminal:
        return [f"still {record.state} at the end"]
    writes = store.file_writes(run_id)
    result = result_view(record, writes)
    conflicts = result["conflicts"]
    full = run_view(record, store.events(run_id))
    problems = []
    if full["conflicts"] != len(conflicts) or full["data"].get("conflicts", []) != conflicts:
        problems.append(f"`run` shows {full['conflicts']} conflicts, the result {len(conflicts)}")
    lines = [r for r in read_log(Project.resolve(root).delegation_log).records
             if r.get("event") == "run" and r.get("run_id") == run_id]
    if lines and lines[-1].get("conflicts") != conflicts:
        problems.append(f"the delegation log has conflicts {lines[-1].get('conflicts')}, the result {conflicts}")
    if conflicts and "conflict" not in str(result["error"]):
        problems.append(f"conflicts but the error does not say so: {result['error']}")
    contents = {w.path: w.content for w in writes}
    for conflict in conflicts:
        kept = root / str(conflict.get("kept_at") or "")
        if not conflict.get("kept_at") or not kept.is_file():
            problems.append(f"{conflict['path']}: the run's version is not kept ({conflict.get('kept_at')})")
        elif kept.read_bytes() != contents.get(conflict["path"]):
            problems.append(f"{conflict['path']}: {conflict['kept_at']} does not hold the run's version")
    if record.state != "cancelled":  # a cancel during a generation journals no generation for that attempt
        problems += journal_problems(store, record)
    return problems + log_problems(root, record)


@dataclass
class Figures:
    """Summed over the sub-cases of one part (in-process, kill -9) or of the whole scenario."""

    edits: Counter[str] = field(default_factory=Counter)
    edits_by_state: Counter[str] = field(default_factory=Counter)
    conflicts_found: int = 0
    conflicts_reported: int = 0
    window_ns: list[int] = field(default_factory=list)
    ended: Counter[str] = field(default_factory=Counter)
    tracebacks: int = 0
    abandoned: int = 0
    busy_s: float = 0.0
    """Wall time during which the editor and the runs worked together (the in-process rounds)..."""
    busy_window_ns: int = 0
    """... and how long the windows of those rounds were open, in all."""
    samples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, verdicts: Verdicts) -> None:
        self.edits.update(verdicts.edits)
        self.edits_by_state.update(verdicts.edits_by_state)
        self.conflicts_found += verdicts.conflicts_found
        self.conflicts_reported += verdicts.conflicts_reported
        self.window_ns += verdicts.window_ns
        self._sample(verdicts.samples)

    def _sample(self, samples: dict[str, list[str]]) -> None:
        for verdict, described in samples.items():
            kept = self.samples.setdefault(verdict, [])
            kept += described[:3 - len(kept)]

    def merge(self, other: Figures) -> None:
        self.edits.update(other.edits)
        self.edits_by_state.update(other.edits_by_state)
        self.conflicts_found += other.conflicts_found
        self.conflicts_reported += other.conflicts_reported
        self.window_ns += other.window_ns
        self.ended.update(other.ended)
        self.tracebacks += other.tracebacks
        self.abandoned += other.abandoned
        self.busy_s += other.busy_s
        self.busy_window_ns += other.busy_window_ns
        self._sample(other.samples)

    @property
    def lost(self) -> int:
        return sum(self.edits[c] for c in LOSSES)

    def summary(self) -> str:
        total = sum(self.edits.values())
        share = 100.0 * self.edits["in_window"] / total if total else 0.0
        odd = "".join(f", {c} {self.edits[c]}" for c in ("unguarded", "unexplained") if self.edits[c])
        ended = ", ".join(f"{k} {v}" for k, v in sorted(self.ended.items()))
        return (f"edits {total} (kept {self.edits['kept']}, base {self.edits['base']}, reverted "
                f"{self.edits['reverted']}, in window {self.edits['in_window']} = {share:.1f} %, lost "
                f"{self.edits['lost']}{odd}); conflicts reported {self.conflicts_reported} of "
                f"{self.conflicts_found} found; runs ended {ended or 'none'}; tracebacks {self.tracebacks}")

    def window(self) -> str:
        if not self.window_ns:
            return "no engine rename or unlink of an output"
        micro = sorted(n / 1000 for n in self.window_ns)
        text = (f"check to rename/unlink: median {statistics.median(micro):.0f} µs, max {micro[-1]:.0f} µs over "
                f"{len(micro)} renames and unlinks")
        if self.busy_s:
            # The chance that an edit made at a random moment of the rounds lands in some open window.
            open_s = self.busy_window_ns / 1e9
            text += (f"; open {open_s * 1000:.1f} ms of the {self.busy_s:.0f} s the runs and the editor worked "
                     f"together ({100 * open_s / self.busy_s:.4f} %)")
        return text

    def by_state(self) -> str:
        return "edits by the state of the run aimed at: " + ", ".join(
            f"{k} {v}" for k, v in sorted(self.edits_by_state.items()))

    def as_dict(self) -> dict[str, Any]:
        return {"edits": sum(self.edits.values()), **{c: self.edits[c] for c in
                                                      ("kept", "base", "reverted", "in_window", *LOSSES)},
                "edits_by_state": dict(self.edits_by_state), "conflicts_found": self.conflicts_found,
                "conflicts_reported": self.conflicts_reported, "runs_ended": dict(self.ended),
                "tracebacks": self.tracebacks, "edits_abandoned": self.abandoned,
                "window_us_max": round(max(self.window_ns, default=0) / 1000, 1),
                "window_open_ms": round(self.busy_window_ns / 1e6, 2), "busy_s": round(self.busy_s, 1),
                "samples": self.samples}
