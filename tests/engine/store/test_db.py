from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from freezegun import freeze_time

from engine.store.db import MachineNotFound, Store
from engine.store.machines import PersistedMachines
from engine.store.schema import SCHEMA_VERSION
from states import DELEGATION

REPO = Path(__file__).resolve().parents[3]


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_transition_survives_a_process_restart(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with Store(db) as store:
        runs = PersistedMachines(store, DELEGATION)
        runs.create("run-1", {"task": "t"})
        runs.fire("run-1", "start")

    read_back = _python(
        "import json, sys\n"
        "from engine.store.db import Store\n"
        "s = Store(sys.argv[1]); r = s.get('run-1')\n"
        "print(json.dumps({'state': r.state, 'version': r.version, 'events': [e.event for e in s.events('run-1')]}))",
        str(db),
    )
    assert read_back.returncode == 0, read_back.stderr
    assert json.loads(read_back.stdout) == {"state": "delegating", "version": 2, "events": ["create", "start"]}


def test_a_process_dying_inside_a_transition_commits_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with Store(db) as store:
        PersistedMachines(store, DELEGATION).create("run-1")

    # The row update and the journal append have both executed when the process dies, before COMMIT.
    crashed = _python(
        "import os, sys\n"
        "from engine.store.machines import PersistedMachines\n"
        "from engine.store.db import Store\n"
        "from states import DELEGATION\n"
        "runs = PersistedMachines(Store(sys.argv[1]), DELEGATION)\n"
        "runs.fire('run-1', 'start', after=lambda tx, rec: os._exit(9))",
        str(db),
    )
    assert crashed.returncode == 9, crashed.stderr

    with Store(db) as store:
        record = store.get("run-1")
        assert (record.state, record.version) == ("pending", 1)
        assert [e.event for e in store.events("run-1")] == ["create"]


def test_two_processes_writing_one_machine_lose_no_events(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with Store(db) as store, store.transaction() as tx:  # a store-level counter: no machine declares `count`
        tx.create("session", kind="counter", state="idle", data={"count": 0})
    writer = (
        "import sys\n"
        "from engine.store.machines import PersistedMachines\n"
        "from engine.store.db import Store\n"
        "from states import SESSION\n"
        "store = Store(sys.argv[1])\n"
        "for _ in range(int(sys.argv[2])):\n"
        "    with store.transaction() as tx:\n"
        "        rec = tx.get('session')\n"
        "        tx.update(rec, event='tick', dst=rec.state, data={'count': rec.data['count'] + 1})\n"
    )
    per_process = 150
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, str(db), str(per_process)], cwd=REPO, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    with Store(db) as store:
        record = store.get("session")
        events = store.events("session")
    assert record.data["count"] == 2 * per_process
    assert record.version == 1 + 2 * per_process
    assert [e.version for e in events] == list(range(1, 2 + 2 * per_process))


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        assert store.settings() == {"journal_mode": "wal", "synchronous": 2, "user_version": SCHEMA_VERSION}


def test_transition_times_come_from_the_clock(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        runs = PersistedMachines(store, DELEGATION)
        with freeze_time("2026-01-02 03:04:05"):
            runs.create("run-1")
        with freeze_time("2026-01-02 03:05:05"):
            moved = runs.fire("run-1", "start")
        assert moved.updated_at - moved.created_at == pytest.approx(60.0)
        assert store.events("run-1")[-1].at == moved.updated_at


def test_an_unknown_machine_id_says_how_to_find_the_known_ones(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store, pytest.raises(MachineNotFound, match="local-llm runs"):
        store.get("run-nope")


def test_reopening_an_existing_database_keeps_its_schema_and_rows(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with Store(db) as store:
        PersistedMachines(store, DELEGATION).create("run-1")
    with Store(db) as store:
        assert store.get("run-1").state == "pending"
        assert store.machines(kind="delegation")[0].id == "run-1"


def test_a_scan_without_some_states_finds_every_other_state_known_or_not(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        with store.transaction() as tx:
            for n, state in enumerate(["aardvark", "cancelled", "delegating", "done", "e", "failed", "zebra", "done"]):
                tx.create(f"m-{n}", kind="delegation", state=state, data={})
        records, damaged = store.scan(kind="delegation", not_states=["done", "failed", "cancelled"])
        assert damaged == []
        assert sorted(r.state for r in records) == ["aardvark", "delegating", "e", "zebra"]
        assert [r.id for r in store.scan(kind="delegation", not_states=["done"], limit=2)[0]] == ["m-6", "m-5"]
