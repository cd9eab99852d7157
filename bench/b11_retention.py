"""B11: what a finished run costs in state.db, before and after the retention policy drops its bodies, and start-up
with a year of runs kept by the policy.

- Bytes per finished run: real delegations through the engine (a scripted backend answering edit blocks, the
  product's default form) each change a 1,500-line file (~37 kB: ten functions get a docstring). The bytes the
  database uses (pages in use, not free ones) grow by `before` per run; after `local-llm db compact --all` (the
  engine's `db_compact`), by `after` per run. Baseline: the same runs before compaction.
- A year of runs: 20 finished runs a day for 365 days (7,300 runs), each a copy of the measured run's rows (its
  machine row, its journal of events, its write journal) ending at its own time; under the default policy the last
  30 days (600 runs) keep their bodies and the rest are compacted, as `serve` leaves them. Figures: `local-llm serve`
  spawned until its first `status` answer against an empty database, and in-process `Engine.open` + the recovery
  scan + the retention pass `serve` makes at start (nothing due) against the same without the pass: the pass is timed
  right after the open, on the same fresh copy, and the figure is the median open + the median pass (a loaded
  machine moves the open by milliseconds from one copy to the next, the pass by microseconds). Each baseline is
  measured in the same run.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio

from bench.b4_startup import _fresh_copy, serve_first_answer
from bench.common import Figure, median, scratch_dir

__all__ = ["DAYS", "KEPT_DAYS", "RUNS_A_DAY", "bytes_per_run", "run"]

RUNS_A_DAY, DAYS, KEPT_DAYS = 20, 365, 30
COPIES = 1_000
TARGET_BYTES = 0.15
TARGET_START = 1.5
TARGET_PASS = 1.2


def _module(functions: int) -> str:
    return "".join(f"def f_{i}(value):\n    result = value * {i}\n    return result + {i}\n\n\n"
                   for i in range(functions))


async def _delegate_runs(project: Path, runs: int) -> list[str]:
    from engine import Engine
    from engine.executor.edits import blocks_for
    from engine.testing.scripted import ScriptedBackend, use_backend

    engine = Engine.open(project)
    try:
        ids = []
        for n in range(runs):
            base = _module(300)  # 1,500 lines
            target = base
            for i in range(n % 30, 300, 30):
                target = target.replace(f"def f_{i}(value):\n", f'def f_{i}(value):\n    """Scale by {i}."""\n', 1)
            name = f"big_{n}.py"
            (project / name).write_text(base)
            use_backend(engine, ScriptedBackend().reply(blocks_for(base, target, path=name)), num_ctx=32768)
            result = await engine.delegate(task="Add docstrings", task_type="docs", output_files=[name],
                                           answer_form="edits")
            if result["state"] != "done":
                raise RuntimeError(f"the delegation ended {result['state']}: {result.get('error')}")
            ids.append(str(result["run_id"]))
        return ids
    finally:
        engine.close()


def _used(project: Path) -> int:
    from engine import Engine

    engine = Engine.open(project)
    try:
        return engine.store.space().used
    finally:
        engine.close()


def _compact(project: Path) -> dict[str, Any]:
    from engine import Engine

    engine = Engine.open(project)
    try:
        return engine.db_compact(everything=True)
    finally:
        engine.close()


def bytes_per_run(root: Path, runs: int) -> tuple[float, float, int, list[str]]:
    """(bytes per run before, after compaction, the file's size, run ids); `root/runs` keeps the compacted project
    and `root/bodies` a copy from before. A compacted run takes well under a page, so `after` is measured on
    COPIES copies of its rows."""
    project = root / "runs"
    project.mkdir()
    empty = _used(project)
    ids = anyio.run(_delegate_runs, project, runs)
    before = (_used(project) - empty) / runs
    shutil.copytree(project / ".claude", root / "bodies" / ".claude")
    _compact(project)
    copies = root / "copies"
    copies.mkdir()
    from engine.project import Project

    made = populate_year(copies, with_bodies=Project(root / "bodies").state_db,
                         compacted=Project(project).state_db, run_id=ids[-1], days=COPIES // RUNS_A_DAY,
                         kept_days=0)
    after = (_used(copies) - empty) / made
    return before, after, len(_module(300).encode()), ids


def _rows(db: Path, run_id: str) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with sqlite3.connect(db) as conn:
        machine = conn.execute("SELECT kind, state, data, version, compacted_at FROM machines WHERE id = ?",
                               (run_id,)).fetchone()
        events = conn.execute("SELECT version, event, src, dst, payload FROM events WHERE machine_id = ?",
                              (run_id,)).fetchall()
        writes = conn.execute("SELECT path, existed, previous, content, attempt, status, base_hash, applied,"
                              " created_dirs, summary FROM file_writes WHERE run_id = ?", (run_id,)).fetchall()
    conn.close()
    return machine, events, writes


def populate_year(project: Path, *, with_bodies: Path, compacted: Path, run_id: str, days: int = DAYS,
                  kept_days: int = KEPT_DAYS) -> int:
    """`days` of finished runs (RUNS_A_DAY a day), the last `kept_days` with bodies, in one transaction; the
    count."""
    from engine.project import Project
    from engine.store.db import Store

    proj = Project(project)
    Store(proj.state_db).close()  # the schema, as the engine makes it
    kept, gone = _rows(with_bodies, run_id), _rows(compacted, run_id)
    now, total = time.time(), days * RUNS_A_DAY
    machines, events, writes, log = [], [], [], []
    for i in range(total):
        new_id, ended = f"run-{i:012x}", now - (total - i) * 86_400 / RUNS_A_DAY
        keeps = now - ended < kept_days * 86_400
        (kind, state, data, version, _), run_events, run_writes = kept if keeps else gone
        compacted_at = None if keeps else ended + kept_days * 86_400
        machines.append((new_id, kind, state, data, ended - 3, ended, version, compacted_at))
        events += [(new_id, *e, ended) for e in run_events]
        writes += [(new_id, *w) for w in run_writes]
        log.append(json.dumps({"event": "run", "timestamp": "2026-11-23T00:00:00Z", "task": "Add docstrings",
                               "task_type": "docs", "score": 0.7, "decision": "delegate",
                               "verification_passed": None, "tokens_generated": 120, "time_seconds": 3.0,
                               "run_id": new_id, "state": "done"}))
    with sqlite3.connect(proj.state_db) as conn:
        conn.executemany("INSERT INTO machines (id, kind, state, data, created_at, updated_at, version, compacted_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", machines)
        conn.executemany("INSERT INTO events (machine_id, version, event, src, dst, payload, at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", events)
        conn.executemany("INSERT INTO file_writes (run_id, path, existed, previous, content, attempt, status,"
                         " base_hash, applied, created_dirs, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         writes)
    conn.close()
    proj.delegation_log.write_text("".join(line + "\n" for line in log), encoding="utf-8")
    return total


def open_scan_pass(project: Path) -> tuple[float, float]:
    """In-process: (seconds of Engine.open + the recovery scan, seconds of the retention pass of `serve`'s start
    that follows, run here in this thread), on the same fresh copy, so the pair shares its disk cache."""
    from engine import Engine
    from engine.delegation.recovery import interrupted_runs
    from engine.delegation.retention import RetentionPolicy, apply_policy

    started = time.perf_counter()
    engine = Engine.open(project)
    try:
        interrupted_runs(engine.ctx.runs)
        opened = time.perf_counter()
        if (report := apply_policy(engine.store, RetentionPolicy.from_env()))["runs_compacted"]:
            raise RuntimeError(f"the year's database was not as the policy leaves it: {report}")
        return opened - started, time.perf_counter() - opened
    finally:
        engine.close()


def run(quick: bool) -> list[Figure]:
    runs, rounds, scans = (3, 1, 3) if quick else (10, 3, 10)
    with scratch_dir("b11") as root:
        before, after, file_bytes, ids = bytes_per_run(root, runs)
        year, empty, work = root / "year", root / "empty", root / "work"
        year.mkdir()
        empty.mkdir()
        from engine.project import Project
        from engine.store.db import Store

        Store(Project(empty).state_db).close()
        total = populate_year(year, with_bodies=Project(root / "bodies").state_db,
                              compacted=Project(root / "runs").state_db, run_id=ids[-1])
        size_mb = Project(year).state_db.stat().st_size / 1e6
        serve_s: dict[str, list[float]] = {"empty": [], "year": []}
        scan_s: dict[str, list[float]] = {"scan": [], "pass": []}
        anyio.run(serve_first_answer, _fresh_copy(empty, work))  # warm the interpreter's file cache once
        for r in range(rounds):
            for name, template in (("empty", empty), ("year", year))[:: 1 if r % 2 else -1]:
                serve_s[name].append(anyio.run(serve_first_answer, _fresh_copy(template, work)))
        for _ in range(scans):
            opening, retaining = open_scan_pass(_fresh_copy(year, work))
            scan_s["scan"].append(opening)
            scan_s["pass"].append(retaining)
    year_text = (f"a year = {RUNS_A_DAY} runs a day x {DAYS} days = {total:,} runs, the last {KEPT_DAYS} days' "
                 "bodies kept")
    opened, passed = median(scan_s["scan"]), median(scan_s["pass"])
    return [
        Figure("B11", f"state.db bytes per finished run (1,500-line file, edit blocks), after `db compact` vs before "
                      f"({runs} runs)", engine=after / 1e3, baseline=before / 1e3, unit="kB/run",
               target=TARGET_BYTES, note=f"the file is {file_bytes / 1e3:.1f} kB: before {before / file_bytes:.2f}x "
                                         f"the file per run, after {after / file_bytes:.3f}x"),
        Figure("B11", f"serve: spawn -> first `status` answer, {year_text} (median of {rounds})",
               engine=median(serve_s["year"]) * 1e3, baseline=median(serve_s["empty"]) * 1e3, unit="ms",
               target=TARGET_START, note=f"empty database as baseline; the year's state.db is {size_mb:.1f} MB"),
        Figure("B11", f"in-process: Engine.open + recovery scan + the start's retention pass vs without the pass, "
                      f"the same year (medians of {scans})", engine=(opened + passed) * 1e3, baseline=opened * 1e3,
               unit="ms", target=TARGET_PASS,
               note=f"nothing due, as serve leaves it: the pass alone {passed * 1e3:.2f} ms; serve makes "
                    "it in a worker thread after its first answer"),
    ]
