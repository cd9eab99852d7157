"""The delegation log (`.claude/workflow/delegation-log.jsonl`) and its statistics.

One JSON object per line: every analyze decision (`event: "analyze"`) and every finished run (`event: "run"`), with
the seed's fields (timestamp, task, task_type, score, decision, verification_passed, tokens_generated, time_seconds).
Each line is appended with a single `os.write` on an O_APPEND descriptor, so lines from concurrent processes never
interleave. Reading skips (and counts) corrupt lines instead of failing.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["LogContents", "aggregate", "append_record", "now_iso", "read_log", "saved_tokens_estimate"]

ORCHESTRATOR_OVERHEAD_TOKENS = 150
"""Tokens the orchestrator spends per delegation call besides the task text (tool call + reading the result)."""
CHARS_PER_TOKEN = 4


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    try:
        line = (json.dumps(dict(record), ensure_ascii=False, default=str) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON input allows "\ud800"): JSON's escapes keep the line valid
        line = (json.dumps(dict(record), ensure_ascii=True, default=str) + "\n").encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write: O_APPEND makes it land whole at the end, even with other writers
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LogContents:
    records: list[dict[str, Any]]
    corrupt_lines: int


def _parse_lines(raw: bytes) -> tuple[list[dict[str, Any]], int]:
    records: list[dict[str, Any]] = []
    corrupt = 0
    for line in raw.splitlines():
        if not line.strip():
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            corrupt += 1
            continue
        if not isinstance(value, dict):
            corrupt += 1
            continue
        records.append(value)
    return records, corrupt


@dataclass
class _Parsed:
    """What this process has parsed of one log file: its complete lines up to `offset`."""

    device: int
    inode: int
    offset: int
    head: bytes
    tail: bytes
    records: list[dict[str, Any]]
    corrupt: int


_FINGERPRINT = 64
_parsed: dict[str, _Parsed] = {}
_parsed_lock = threading.Lock()


def read_log(path: Path) -> LogContents:
    """Every record of the log (corrupt lines counted, not returned). Treat the records as read-only.

    The log only grows (appends), and `analyze` reads it on every call, so the complete lines parsed once are kept
    per process and only the bytes appended since are parsed (O(new lines), not O(log): BENCHMARKS.md B2). A file
    that was replaced, truncated or rewritten (its first or last parsed bytes differ) is parsed again from the start.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; one descriptor for stat and reads
    except FileNotFoundError:
        with _parsed_lock:
            _parsed.pop(str(path), None)
        return LogContents([], 0)
    with f, _parsed_lock:
        st = os.fstat(f.fileno())
        known = _parsed.get(str(path))
        if known is not None and not _still_valid(f, st, known):
            known = None
        if known is None:
            known = _Parsed(st.st_dev, st.st_ino, 0, b"", b"", [], 0)
        f.seek(known.offset)
        fresh = f.read()
        complete = fresh.rfind(b"\n") + 1  # an unterminated last line is parsed on every read, never kept
        if complete:
            records, corrupt = _parse_lines(fresh[:complete])
            known.records.extend(records)
            known.corrupt += corrupt
            known.offset += complete
            if not known.head:
                f.seek(0)
                known.head = f.read(min(_FINGERPRINT, known.offset))
            known.tail = (known.tail + fresh[:complete])[-_FINGERPRINT:]
        _parsed[str(path)] = known
        partial, partial_corrupt = _parse_lines(fresh[complete:])
        return LogContents([*known.records, *partial], known.corrupt + partial_corrupt)


def _still_valid(f: BinaryIO, st: os.stat_result, known: _Parsed) -> bool:
    """The file is the one parsed, with the parsed bytes unchanged (checked at both ends), only grown since."""
    if (st.st_dev, st.st_ino) != (known.device, known.inode) or st.st_size < known.offset:
        return False
    f.seek(0)
    if f.read(len(known.head)) != known.head:
        return False
    f.seek(known.offset - len(known.tail))
    return f.read(len(known.tail)) == known.tail


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def saved_tokens_estimate(runs: Iterable[Mapping[str, Any]]) -> int:
    """Estimate of orchestrator tokens saved: for every run that ended `done`, the tokens the executor generated
    less those it spent thinking (the rest is code the orchestrator did not have to write), minus, for every run,
    what delegating cost the orchestrator:
    the task text (chars / 4) plus a fixed ORCHESTRATOR_OVERHEAD_TOKENS for the call and reading the result.
    Never below zero. It is an estimate: the orchestrator's own answer would not be token-for-token the same."""
    saved = 0.0
    for r in runs:
        if r.get("state") == "done":
            saved += _num(r.get("tokens_generated")) - _num(r.get("thinking_tokens"))
        saved -= math.ceil(len(str(r.get("task", ""))) / CHARS_PER_TOKEN) + ORCHESTRATOR_OVERHEAD_TOKENS
    return max(0, int(saved))


def _conflicts(record: Mapping[str, Any]) -> list[Any]:
    found = record.get("conflicts")
    return found if isinstance(found, list) else []


def _group(runs: list[dict[str, Any]]) -> dict[str, Any]:
    verified = [r for r in runs if r.get("verification_passed") is not None]
    passed = [r for r in verified if r.get("verification_passed") is True]
    return {
        "runs": len(runs),
        "done": sum(1 for r in runs if r.get("state") == "done"),
        "verification_pass_rate": _rate(len(passed), len(verified)),
        "tokens_generated": int(sum(_num(r.get("tokens_generated")) for r in runs)),
        "thinking_tokens": int(sum(_num(r.get("thinking_tokens")) for r in runs)),
        "time_seconds": round(sum(_num(r.get("time_seconds")) for r in runs), 3),
    }


RECENT_BATCHES = 10


def _batches(lines: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Batches: how many ended, and the totals of the latest ones. Their children are counted once, as runs (each
    run line names its batch); a batch's own line only carries its totals."""
    children = [r for r in runs if r.get("batch_id")]
    latest: dict[str, dict[str, Any]] = {}
    for b in lines:
        latest[str(b.get("batch_id"))] = {
            "state": b.get("state"), "children": int(_num(b.get("children"))),
            "counts": b.get("counts") if isinstance(b.get("counts"), dict) else {},
            "tokens_generated": int(_num(b.get("tokens_generated"))), "time_seconds": _num(b.get("time_seconds")),
        }
    return {
        "count": len(latest),
        "child_runs": len(children),
        "child_runs_done": sum(1 for r in children if r.get("state") == "done"),
        "recent": dict(list(latest.items())[-RECENT_BATCHES:]),
    }


def aggregate(contents: LogContents) -> dict[str, Any]:
    analyses = [r for r in contents.records if r.get("event") == "analyze"]
    runs = [r for r in contents.records if r.get("event") == "run"]
    recommended = sum(1 for r in analyses if r.get("decision") == "delegate")
    verified = [r for r in runs if r.get("verification_passed") is not None]
    passed = [r for r in verified if r.get("verification_passed") is True]
    first = [r for r in passed if int(_num(r.get("attempts")) or 1) == 1]
    by_type: dict[str, list[dict[str, Any]]] = {}
    by_model: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_type.setdefault(str(r.get("task_type") or "unknown"), []).append(r)
        by_model.setdefault(str(r.get("model") or "unknown"), []).append(r)
    done = sum(1 for r in runs if r.get("state") == "done")
    return {
        "total": len(contents.records),
        "analyzed": len(analyses),
        "recommended_delegate": recommended,
        "delegation_rate": _rate(recommended, len(analyses)),
        "delegated": len(runs),
        "done": done,
        "failed": sum(1 for r in runs if r.get("state") == "failed"),
        "cancelled": sum(1 for r in runs if r.get("state") == "cancelled"),
        "runs_with_conflicts": sum(1 for r in runs if _conflicts(r)),
        "conflicts": sum(len(_conflicts(r)) for r in runs),
        "success_rate": _rate(done, len(runs)),
        "verification_pass_rate": _rate(len(passed), len(verified)),
        "first_attempt_pass_rate": _rate(len(first), len(verified)),
        "by_task_type": {k: _group(v) for k, v in sorted(by_type.items())},
        "by_model": {k: _group(v) for k, v in sorted(by_model.items())},
        "tokens_generated": int(sum(_num(r.get("tokens_generated")) for r in runs)),
        "thinking_tokens": int(sum(_num(r.get("thinking_tokens")) for r in runs)),
        "prompt_tokens": int(sum(_num(r.get("prompt_tokens")) for r in runs)),
        "runs_prompt_too_long": sum(1 for r in runs if r.get("prompt_overflow")),
        "time_seconds": round(sum(_num(r.get("time_seconds")) for r in runs), 3),
        "orchestrator_tokens_saved_estimate": saved_tokens_estimate(runs),
        "estimate_formula": (
            "sum(tokens_generated - thinking_tokens of runs that ended done) - sum(ceil(len(task)/4) + "
            f"{ORCHESTRATOR_OVERHEAD_TOKENS}) over all runs, floored at 0"
        ),
        "batches": _batches([r for r in contents.records if r.get("event") == "batch"], runs),
        "corrupt_lines": contents.corrupt_lines,
    }
