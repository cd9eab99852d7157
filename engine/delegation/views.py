"""The views of a run, built in one place from its record (and its write journal and events): the row of `runs`,
the full `run` view, the answer of `delegate` and `result`, and the line the delegation log gets when it ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.delegation import metrics
from engine.store.db import EventRecord, FileWrite, MachineRecord
from states import RunData

__all__ = ["elapsed", "list_row", "log_line", "result_view", "run_view"]


def elapsed(record: MachineRecord) -> float:
    """Wall time from the run's start to its last transition (its end, once finished); resumes included."""
    started = RunData.from_json(record.data).started_at or record.created_at
    return round(max(0.0, record.updated_at - started), 3)


def list_row(record: MachineRecord) -> dict[str, Any]:
    data = RunData.from_json(record.data)
    return {
        "run_id": record.id,
        "state": record.state,
        "task": data.task,
        "task_type": data.task_type,
        "attempts": data.attempt,
        "max_attempts": data.max_attempts,
        "files": data.output_paths,
        "error": data.error,
        "conflicts": len(data.conflicts),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def run_view(record: MachineRecord, events: Sequence[EventRecord]) -> dict[str, Any]:
    """`local-llm run ID`: the row, the raw data, and the journal of its transitions."""
    return {
        **list_row(record),
        "data": record.data,
        "events": [
            {"version": e.version, "event": e.event, "from": e.src, "to": e.dst, "payload": e.payload, "at": e.at}
            for e in events
        ],
    }


def result_view(record: MachineRecord, writes: Sequence[FileWrite]) -> dict[str, Any]:
    """What `delegate` and `result` answer."""
    data = RunData.from_json(record.data)
    return {
        "run_id": record.id,
        "state": record.state,
        "task": data.task,
        "task_type": data.task_type,
        "model": data.model_name,
        "files": [
            {"path": w.path, "status": w.status, "existed": w.existed,
             "bytes": len(w.content) if w.content is not None else 0}
            for w in writes
        ],
        "files_skipped": data.files_skipped,
        "verification": data.verification or {"passed": None, "output_tail": ""},
        "attempts": data.attempt,
        "max_attempts": data.max_attempts,
        "tokens_generated": data.tokens_generated,
        "thinking_tokens": data.thinking_tokens,
        "prompt_tokens": data.prompt_tokens,
        "prompt_overflow": data.prompt_overflow,
        "time_seconds": elapsed(record),
        "error": data.error,
        "conflicts": data.conflicts,
        "cancel_requested": data.cancel_requested,
    }


def _verification_passed(record: MachineRecord, data: RunData) -> bool | None:
    if data.verification is not None and data.verification["passed"] is not None:
        return data.verification["passed"]
    if data.verify and record.state == "failed":
        return False
    return None


def log_line(record: MachineRecord) -> dict[str, Any]:
    """The delegation-log record of a finished run; the seed fields first (timestamp, task, task_type, score,
    decision, verification_passed, tokens_generated, time_seconds), which `stats` and older readers rely on."""
    data = RunData.from_json(record.data)
    return {
        "event": "run", "timestamp": metrics.now_iso(), "task": data.task, "task_type": data.task_type,
        "score": data.score, "decision": "delegated", "verification_passed": _verification_passed(record, data),
        "tokens_generated": data.tokens_generated, "time_seconds": elapsed(record), "run_id": record.id,
        "state": record.state, "model": data.model_name, "attempts": data.attempt,
        "prompt_tokens": data.prompt_tokens, "thinking_tokens": data.thinking_tokens, "think": data.think,
        "prompt_overflow": data.prompt_overflow, "files": data.output_paths,
        "files_skipped": [s["path"] for s in data.files_skipped], "error": data.error,
        "conflicts": data.conflicts,
    }
