"""The views of a run, built in one place from its record (and its write journal and events): the row of `runs`,
the full `run` view, the answer of `delegate` and `result`, and the line the delegation log gets when it ends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.delegation import metrics
from engine.delegation.answer_forms import edit_answers
from engine.executor.edits import summarize_change, unified_diff
from engine.store.db import EventRecord, FileWrite, MachineRecord
from states import RunData

__all__ = ["RESULT_TAIL_CHARS", "elapsed", "file_change", "list_row", "log_line", "result_view", "run_view"]

MAX_REGIONS = 8
"""Functions, classes or sections named per file in a result; the diff has the rest."""
RESULT_TAIL_CHARS = 1200
"""How much of a failed verify command's output the orchestrator gets (the model's retry prompt gets more): the end,
where test runners put their summary."""


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
        "compacted_at": record.compacted_at,
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


def file_change(write: FileWrite, *, diff: bool = False) -> dict[str, Any]:
    """One output for the orchestrator: what became of it and how much changed (lines added and removed against the
    file as the run found it); the unified diff only when asked for."""
    out: dict[str, Any] = {"path": write.path, "status": write.status, "existed": write.existed,
                           "bytes": len(write.content) if write.content is not None else 0}
    if write.content is None and write.summary is not None:  # the retention policy dropped the contents
        summary = write.summary
        out.update(bytes=summary["bytes"], added=summary["added"], removed=summary["removed"],
                   changed=list(summary["changed"]))
        if diff:
            out["diff"] = None
            out["diff_dropped"] = "the contents were dropped by the retention policy (docs/retention.md)"
        return out
    if write.content is None:
        return out
    change = summarize_change(write.previous, write.content, path=write.path)
    out.update(added=change.added, removed=change.removed, changed=list(change.regions[:MAX_REGIONS]))
    if diff:
        out["diff"] = unified_diff(write.previous, write.content, path=write.path)
    return out


def _verification(data: RunData) -> dict[str, Any]:
    if data.verification is None:
        return {"passed": None, "output_tail": ""}
    verification = dict(data.verification)
    tail = str(verification.get("output_tail") or "")
    if len(tail) > RESULT_TAIL_CHARS:
        verification["output_tail"] = "..." + tail[-RESULT_TAIL_CHARS:]
    return verification


def result_view(record: MachineRecord, writes: Sequence[FileWrite], *, diff: bool = False) -> dict[str, Any]:
    """What `delegate` and `result` answer, compact: the orchestrator pays for every token of it. The task (it
    wrote it) and the prompts stay out; the verify output appears once, its end only; diffs when asked for."""
    data = RunData.from_json(record.data)
    return {
        "run_id": record.id,
        "state": record.state,
        "task_type": data.task_type,
        "model": data.model_name,
        "files": [file_change(w, diff=diff) for w in writes],
        "files_skipped": data.files_skipped,
        "verification": _verification(data),
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


def _verification_passed(data: RunData) -> bool | None:
    """What the verify command said, or None when it did not run (no command, or the run ended before it: a backend
    that was down is not a failed verification, and must not pull the history term of later scores down)."""
    if data.verification is not None:
        return data.verification["passed"]
    return None


def log_line(record: MachineRecord) -> dict[str, Any]:
    """The delegation-log record of a finished run; the seed fields first (timestamp, task, task_type, score,
    decision, verification_passed, tokens_generated, time_seconds), which `stats` and older readers rely on. Its
    `decision` is the specification's `delegate` (lines written before said `delegated`; `stats` tells runs by their
    `event`, so both count)."""
    data = RunData.from_json(record.data)
    return {
        "event": "run", "timestamp": metrics.now_iso(), "task": data.task, "task_type": data.task_type,
        "score": data.score, "decision": "delegate", "verification_passed": _verification_passed(data),
        "tokens_generated": data.tokens_generated, "time_seconds": elapsed(record), "run_id": record.id,
        "state": record.state, "model": data.model_name, "attempts": data.attempt,
        "prompt_tokens": data.prompt_tokens, "thinking_tokens": data.thinking_tokens, "think": data.think,
        "prompt_overflow": data.prompt_overflow, "files": data.output_paths,
        "files_skipped": [s["path"] for s in data.files_skipped], "error": data.error,
        "conflicts": data.conflicts, "batch_id": data.batch_id, "backend": data.backend,
        "answer_form": data.answer_form, "edit_answers": edit_answers(data, done=record.state == "done"),
    }
