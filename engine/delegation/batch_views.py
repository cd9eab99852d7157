"""The views of a batch: the counts while it runs, the compact summary once it ended (one line per child), the
progress message, and the delegation-log line of its end. The orchestrator pays for every token of these: a child's
details come from `run <batch id>.<n>`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from engine.delegation import metrics
from engine.store.db import MachineRecord
from states import BATCH, DELEGATION, BatchData, RunData

__all__ = ["batch_log_line", "batch_view", "child_line", "counts", "progress_message"]


def counts(children: Sequence[MachineRecord]) -> dict[str, int]:
    """Children by state (only the states some child is in), in the machine's order of states."""
    found = Counter(c.state for c in children)
    return {s: found[s] for s in DELEGATION.states if found[s]}


def child_line(record: MachineRecord) -> str:
    """`path[,path] state attempts[ conflict]`."""
    data = RunData.from_json(record.data)
    line = f"{','.join(data.output_paths)} {record.state} {data.attempt}"
    return line + " conflict" if data.conflicts else line


def _elapsed(record: MachineRecord, data: BatchData) -> float:
    return round(max(0.0, record.updated_at - (data.started_at or record.created_at)), 1)


def batch_view(record: MachineRecord, children: Sequence[MachineRecord]) -> dict[str, Any]:
    """What `batch` and `result` answer for a batch: counts while it runs (and the children in flight); at the end
    one line per child, in the batch's order (child n is run `<batch id>.<n>`)."""
    data = BatchData.from_json(record.data)
    ended = record.state in BATCH.terminal
    view: dict[str, Any] = {
        "batch_id": record.id, "state": record.state, "total": len(children), "counts": counts(children),
    }
    if ended:
        view["children"] = [child_line(c) for c in children]
        view["child_run"] = f"{record.id}.<line number from 1>"
    else:
        view["running"] = [child_line(c) for c in children
                           if c.state not in DELEGATION.terminal and c.state != "pending"]
    if data.paused:
        view["paused"] = data.paused
    if data.stop_reason:
        view["stop_reason"] = data.stop_reason
    if data.template:
        view["template"] = data.template
    view["tokens_generated"] = sum(RunData.from_json(c.data).tokens_generated for c in children)
    view["time_seconds"] = _elapsed(record, data)
    return view


def progress_message(children: Sequence[MachineRecord], current: MachineRecord | None) -> tuple[int, str]:
    """`k of N done` and the child that just moved."""
    ended = sum(1 for c in children if c.state in DELEGATION.terminal)
    text = f"{ended} of {len(children)} done"
    if current is not None:
        text += f"; {','.join(RunData.from_json(current.data).output_paths)}: {current.state}"
    return ended, text


def batch_log_line(record: MachineRecord, children: Sequence[MachineRecord]) -> dict[str, Any]:
    """The delegation-log line of an ended batch: its totals. Its children have lines of their own (`event: run`,
    with `batch_id`), so `stats` counts every run once."""
    data = BatchData.from_json(record.data)
    return {
        "event": "batch", "timestamp": metrics.now_iso(), "batch_id": record.id, "state": record.state,
        "children": len(children), "counts": counts(children),
        "tokens_generated": sum(RunData.from_json(c.data).tokens_generated for c in children),
        "time_seconds": _elapsed(record, data), "template": data.template,
    }
