"""B4: start-up with 10,000 finished runs and 10 interrupted ones vs an empty database.

The populated project is built once, fast (one transaction of rows shaped as the engine writes them: machine rows,
their journal, and the delegation log), then copied fresh for every start, because a start recovers (and so changes)
the interrupted runs. Two figures:
- `local-llm serve` spawned until it has answered `initialize` and a first `status` call over stdio;
- in-process: `Engine.open` + the recovery scan (`interrupted_runs`), without the per-run claims.
The interrupted runs need no model: the servers run with `LOCAL_LLM_BACKEND=ollama` and no Ollama anywhere, so their
resume (started in the background by `serve`) fails fast instead of loading one. Start-up must not wait for it anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import PYTHON, REPO, Figure, median, scratch_dir, serve_env, stdio_client

__all__ = ["FINISHED", "INTERRUPTED", "populate", "run"]

FINISHED, INTERRUPTED = 10_000, 10
TARGET = 1.5
DEAD_OWNER = f"{socket.gethostname()}:999999999:0"
"""A process token whose process cannot exist, so recovery takes the interrupted runs over."""
_FINISHED_PATH = ("pending", "delegating", "writing", "verifying", "done")
_EVENTS = ("create", "start", "packed", "generated", "written", "passed")


def _run_data(i: int) -> dict[str, Any]:
    prompt = f"Task {i}: write the module.\n" + "def helper(x):\n    return x * 2\n" * 40  # ~1.3 kB, as packed
    return {
        "task": f"task {i}", "task_type": "generate", "context_files": ["util.py"],
        "output_files": [{"path": f"out_{i % 50}.py", "description": "module"}], "verify": "python -m py_compile",
        "verify_timeout": 120.0, "max_attempts": 3, "attempt": 1, "model": None, "allow_secrets": False,
        "score": 0.7, "history": [], "tokens_generated": 120, "prompt_tokens": 600,
        "prompt": {"system": "You write files.", "user": prompt},
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def populate(project: Path, *, finished: int = FINISHED, interrupted: int = INTERRUPTED) -> None:
    """Fill `project`'s state.db and delegation log in one transaction."""
    from engine.project import Project
    from engine.store.db import Store

    proj = Project(project)
    now = time.time() - 86_400
    machines: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    log_lines: list[str] = []
    for i in range(finished + interrupted):
        run_id = f"run-{i:012x}"
        data = _run_data(i)
        at = now + i
        done = i < finished
        path = _FINISHED_PATH if done else ("pending", "delegating")
        names = _EVENTS[: len(path) + 1] if done else _EVENTS[:3]
        states = (path[0], *path) if done else ("pending", "pending", "delegating")
        for version, (event, dst) in enumerate(zip(names, states, strict=True), start=1):
            src = None if version == 1 else states[version - 2]
            events.append((run_id, version, event, src, dst, _dumps({"attempt": 1}), at))
        machines.append((run_id, "delegation", states[-1], _dumps(data), None if done else DEAD_OWNER, at, at,
                         len(names)))
        if done:
            log_lines.append(json.dumps({"event": "run", "timestamp": "2026-11-23T00:00:00Z", "task": data["task"],
                                         "task_type": "generate", "score": 0.7, "decision": "delegated",
                                         "verification_passed": True, "tokens_generated": 120, "time_seconds": 3.2,
                                         "run_id": run_id, "state": "done", "model": "deepseek-coder:6.7b"}))
    Store(proj.state_db).close()  # the schema, as the engine makes it
    # Bulk rows straight into the tables (10,000 runs through the engine would take minutes): fixture data only.
    with sqlite3.connect(proj.state_db) as conn:
        conn.executemany(
            "INSERT INTO machines (id, kind, state, data, owner, created_at, updated_at, version)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", machines)
        conn.executemany(
            "INSERT INTO events (machine_id, version, event, src, dst, payload, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            events)
    conn.close()
    proj.delegation_log.write_text("".join(line + "\n" for line in log_lines), encoding="utf-8")


def _fresh_copy(template: Path, target: Path) -> Path:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template, target)
    # Flush the copy now: otherwise writing back ~27 MB of dirty pages overlaps the measured start of the big one.
    os.sync()
    return target


async def serve_first_answer(project: Path) -> float:
    """Seconds from spawning `local-llm serve` until its first `status` answer has arrived."""
    from mcp.client.stdio import StdioServerParameters

    params = StdioServerParameters(command=PYTHON, args=["-m", "mcp_adapter", "serve"],
                                   env=serve_env(project, LOCAL_LLM_BACKEND="ollama"), cwd=str(REPO))
    started = time.perf_counter()
    async with stdio_client(params) as client:
        result = await client.call_tool("local_llm", {"action": "status"})
        elapsed = time.perf_counter() - started
        if result.is_error:
            raise RuntimeError(f"status failed: {result.content}")
    return elapsed


def open_and_scan(project: Path) -> tuple[float, int]:
    """In-process: Engine.open + the recovery scan; (seconds, interrupted runs found)."""
    from engine import Engine
    from engine.delegation.recovery import interrupted_runs

    started = time.perf_counter()
    engine = Engine.open(project)
    try:
        found = len(interrupted_runs(engine.ctx.runs))
        return time.perf_counter() - started, found
    finally:
        engine.close()


def run(quick: bool) -> list[Figure]:
    rounds, scans = (2, 5) if quick else (5, 20)
    with scratch_dir("b4") as root:
        empty, full = root / "empty", root / "full"
        empty.mkdir()
        full.mkdir()
        populate(empty, finished=0, interrupted=0)  # a created, empty database: the schema is not start-up's cost
        only = root / "only-interrupted"  # attributes the in-process difference: 10 interrupted, no finished runs
        only.mkdir()
        populate(only, finished=0)
        started = time.perf_counter()
        populate(full)
        populate_s = time.perf_counter() - started
        work = root / "work"
        serve_s: dict[str, list[float]] = {"empty": [], "full": []}
        scan_s: dict[str, list[float]] = {"empty": [], "full": [], "only": []}
        found = 0
        anyio.run(serve_first_answer, _fresh_copy(empty, work))  # warm the interpreter's file cache once
        for r in range(rounds):
            for name, template in (("empty", empty), ("full", full))[:: 1 if r % 2 else -1]:
                serve_s[name].append(anyio.run(serve_first_answer, _fresh_copy(template, work)))
        for _ in range(scans):
            for name, template in (("empty", empty), ("full", full), ("only", only)):
                seconds, n = open_and_scan(_fresh_copy(template, work))
                scan_s[name].append(seconds)
                found = max(found, n)
    return [
        Figure("B4", f"serve: spawn -> first `status` answer, {FINISHED:,} done + {INTERRUPTED} interrupted runs "
                     f"(median of {rounds})",
               engine=median(serve_s["full"]) * 1e3, baseline=median(serve_s["empty"]) * 1e3, unit="ms",
               target=TARGET, note=f"empty database as baseline; populated in {populate_s:.1f} s"),
        Figure("B4", f"in-process: Engine.open + recovery scan (median of {scans})",
               engine=median(scan_s["full"]) * 1e3, baseline=median(scan_s["empty"]) * 1e3, unit="ms",
               target=TARGET, note=f"found {found} interrupted; the {INTERRUPTED} interrupted runs alone: "
                                   f"{median(scan_s['only']) * 1e3:.2f} ms"),
    ]
