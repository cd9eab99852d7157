"""The retention policy: a finished run keeps its bodies (the packed prompt, the model's answers, the journaled
contents of its files: about three times the file per run) for `keep_days`, and while state.db holds less than
`keep_mb`; past either bound, the oldest finished runs lose them. docs/retention.md is the user's side.

What stays of a compacted run is everything `run`, `result`, `runs`, `stats`, the diagrams and recovery read: its
row and data (task, files, counts, verification, errors, conflicts, each failed attempt's kind and detail), its whole
journal of events, each file's hashes and a summary of its change (bytes, lines added and removed, regions), and the
delegation log. Only runs in a terminal state are compacted (checked again in SQL in the transaction that drops), and
never a child of a batch that has not ended.

Applied automatically when `serve` starts (after interrupted runs resumed, in a worker thread, a batch of runs per
transaction so `status` and runs go on meanwhile), and by `local-llm db compact`, which also rewrites the file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.delegation.views import MAX_REGIONS
from engine.env import env_bound
from engine.errors import InvalidArgument
from engine.executor.edits import summarize_change
from engine.store.db import Store
from engine.store.journal import FileWrite
from engine.store.retention import WithBodies
from states import BATCH, DELEGATION, FileSummary, RunData

__all__ = [
    "DEFAULT_KEEP_DAYS",
    "DEFAULT_KEEP_MB",
    "KEEP_DAYS_ENV",
    "KEEP_MB_ENV",
    "RetentionPolicy",
    "apply_policy",
    "file_summary",
]

KEEP_DAYS_ENV = "LOCAL_LLM_KEEP_DAYS"
KEEP_MB_ENV = "LOCAL_LLM_KEEP_MB"
DEFAULT_KEEP_DAYS = 30.0
"""A month: long enough to look back at last week's runs (`local-llm run ID --json` shows the prompt and answers,
`result --diff` the diff), short enough that a year of use keeps a month of bodies."""
DEFAULT_KEEP_MB = 100.0
"""A bound for heavy use: 100 MB is about 1,300 runs on 1,500-line files, or a few weeks at 50 such runs a day."""
DAY_S = 86_400.0
BATCH_SIZE = 50
"""Runs compacted per transaction: a few milliseconds of write lock each, so runs and `status` go on meanwhile."""


@dataclass(frozen=True)
class RetentionPolicy:
    keep_days: float = DEFAULT_KEEP_DAYS
    """A finished run keeps its bodies this many days after it ended; 0: no bound by age."""
    keep_mb: float = DEFAULT_KEEP_MB
    """While state.db holds more than this many MB (10^6 bytes) of data, the oldest finished runs lose their bodies;
    0: no bound by size."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, keep_days: float | None = None,
                 keep_mb: float | None = None) -> RetentionPolicy:
        """$LOCAL_LLM_KEEP_DAYS and $LOCAL_LLM_KEEP_MB, each overridden by an explicit value."""
        env = os.environ if environ is None else environ
        days = env_bound(env, KEEP_DAYS_ENV, DEFAULT_KEEP_DAYS) if keep_days is None else keep_days
        mb = env_bound(env, KEEP_MB_ENV, DEFAULT_KEEP_MB) if keep_mb is None else keep_mb
        for field, value in (("keep_days", days), ("keep_mb", mb)):
            if not value >= 0 or value == float("inf"):
                raise InvalidArgument(field, "a number >= 0 (0 turns this bound off)", value)
        return cls(keep_days=days, keep_mb=mb)


def file_summary(write: FileWrite) -> FileSummary | None:
    """What `result` says of a file (views.file_change), kept when its contents go; None if it had none."""
    if write.content is None:
        return None
    change = summarize_change(write.previous, write.content, path=write.path)
    return {"bytes": len(write.content), "added": change.added, "removed": change.removed,
            "changed": list(change.regions[:MAX_REGIONS])}


def _compacted(store: Store, run: WithBodies) -> tuple[tuple[str, dict[str, Any], dict[str, FileSummary]], int]:
    """The run's new data and file summaries, and about how many bytes dropping its bodies frees."""
    dropped = RunData.from_json(run.data).without_bodies()
    data = {**run.data, **{k: v for k, v in dropped.items() if k in run.data}}  # a field never written stays out
    writes = store.file_writes(run.id)
    summaries = {w.path: s for w in writes if (s := file_summary(w)) is not None}
    freed = len(json.dumps(run.data)) - len(json.dumps(data)) + sum(
        len(w.previous or b"") + len(w.content or b"") for w in writes)
    return (run.id, data, summaries), freed


def _sweep(store: Store, *, ended_before: float, live_batches: frozenset[str], excess: Callable[[], int | None],
           check_cancelled: Callable[[], None]) -> tuple[int, int]:
    """Compact finished runs that ended before `ended_before`, oldest first, while `excess()` (bytes still to free;
    None: no bound) is not 0 or less; (compacted, passed over as children of a live batch)."""
    compacted = passed = 0
    after: tuple[float, str] | None = None
    terminal: Sequence[str] = sorted(DELEGATION.terminal)
    while (wanted := excess()) is None or wanted > 0:
        check_cancelled()
        runs = store.runs_with_bodies(kind=DELEGATION.kind, states=terminal, ended_before=ended_before, after=after,
                                      limit=BATCH_SIZE)
        if not runs:
            break
        chosen = []
        for run in runs:
            after = (run.updated_at, run.id)
            if RunData.from_json(run.data).batch_id in live_batches:
                passed += 1
                continue
            change, freed = _compacted(store, run)
            chosen.append(change)
            if wanted is not None and (wanted := wanted - freed) <= 0:
                break  # enough for the size bound: the next runs keep their bodies
        compacted += len(store.compact(chosen, states=terminal))
    return compacted, passed


def apply_policy(
    store: Store, policy: RetentionPolicy, *, now: float | None = None, everything: bool = False,
    vacuum: bool = False, check_cancelled: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Drop the bodies the policy no longer keeps (`everything`: every finished run's), then give the freed pages
    back (`vacuum`: rewrite the file). `check_cancelled` is called between transactions (a worker thread's way to
    stop when its caller is cancelled). Returns what was done, with the file's size before and after."""
    now = time.time() if now is None else now
    before = store.space()
    live, _ = store.scan(kind=BATCH.kind, not_states=sorted(BATCH.terminal))
    live_batches = frozenset(b.id for b in live)
    compacted = passed = 0
    cutoff = now if everything else (now - policy.keep_days * DAY_S if policy.keep_days > 0 else None)
    if cutoff is not None:
        by_age = _sweep(store, ended_before=cutoff, live_batches=live_batches, excess=lambda: None,
                        check_cancelled=check_cancelled)
        compacted, passed = by_age
    if policy.keep_mb > 0 and not everything:
        cap = int(policy.keep_mb * 1_000_000)
        by_size = _sweep(store, ended_before=now, live_batches=live_batches,
                         excess=lambda: store.space().used - cap, check_cancelled=check_cancelled)
        compacted, passed = compacted + by_size[0], max(passed, by_size[1])  # the same children, passed again
    after = store.space(give_back=compacted > 0, vacuum=vacuum)
    return {
        "database": str(store.path), "policy": asdict(policy), "everything": everything,
        "runs_compacted": compacted, "runs_in_live_batches": passed, "vacuumed": vacuum,
        "bytes_before": before.file, "bytes_after": after.file, "used_before": before.used, "used_after": after.used,
    }
