"""B1: durable transitions per second through the engine vs raw SQLite inserts (same pragmas, one transaction each).

Engine side: `PersistedMachines.fire` on a real session machine, cycling enable -> ready -> run_started ->
runs_finished -> disable -> stopped (each fire reads the row, validates with `transitions`, updates the row and
appends the journal entry in one BEGIN IMMEDIATE transaction). Raw side: one `BEGIN IMMEDIATE; INSERT; COMMIT` per
row into a table shaped like the journal, on a connection with the store's pragmas (WAL, synchronous=FULL).
Rounds alternate between the two so a slow moment of the disk hits both; the best round of each counts.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from bench.common import Figure, scratch_dir

__all__ = ["CYCLE", "engine_round", "raw_round", "run"]

CYCLE = ("enable", "ready", "run_started", "runs_finished", "disable", "stopped")


def engine_round(directory: Path, n: int) -> float:
    """Transitions per second over `n` fires on a fresh store."""
    from engine.store.db import Store
    from engine.store.machines import PersistedMachines
    from states import SESSION

    with Store(directory / "engine.db") as store:
        machines = PersistedMachines(store, SESSION)
        machines.create("session")
        started = time.perf_counter()
        for i in range(n):
            machines.fire("session", CYCLE[i % len(CYCLE)], payload={"i": i})
        return n / (time.perf_counter() - started)


def raw_round(directory: Path, n: int) -> float:
    """Rows per second over `n` single-insert transactions with the store's pragmas."""
    conn = sqlite3.connect(str(directory / "raw.db"), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, machine_id TEXT NOT NULL, version INTEGER,"
            " event TEXT NOT NULL, src TEXT, dst TEXT NOT NULL, payload TEXT NOT NULL, at REAL NOT NULL)"
        )
        started = time.perf_counter()
        for i in range(n):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO events (machine_id, version, event, src, dst, payload, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                ("session", i, CYCLE[i % len(CYCLE)], "idle", "starting", json.dumps({"i": i}), time.time()),
            )
            conn.execute("COMMIT")
        return n / (time.perf_counter() - started)
    finally:
        conn.close()


def run(quick: bool) -> list[Figure]:
    n, rounds = (300, 3) if quick else (2000, 5)
    engine_rates: list[float] = []
    raw_rates: list[float] = []
    for r in range(rounds):
        with scratch_dir("b1") as directory:
            # Alternate which side goes first: neither always gets the warmer disk cache.
            if r % 2:
                engine_rates.append(engine_round(directory, n))
                raw_rates.append(raw_round(directory, n))
            else:
                raw_rates.append(raw_round(directory, n))
                engine_rates.append(engine_round(directory, n))
    engine, raw = max(engine_rates), max(raw_rates)
    # Higher is better here, so the table's ratio is raw/engine (time per transition), target 1/0.7.
    return [Figure("B1", f"durable transitions/s ({n} x {rounds} rounds, best); ratio = time per move",
                   engine=1 / engine * 1e6, baseline=1 / raw * 1e6, unit="us/move", target=1 / 0.7,
                   target_text="engine >= 0.7 x raw (ratio <= 1.43)",
                   note=f"engine {engine:,.0f}/s, raw {raw:,.0f}/s")]
