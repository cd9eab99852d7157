from __future__ import annotations

import sqlite3
import subprocess
import sys

import anyio
import pytest

from engine import Engine, UserError
from engine.delegation.recovery import claim, interrupted_runs, recover
from engine.store.db import MachineRecord
from engine.store.ownership import current_token, token_alive


def _runs_in(engine: Engine, states: dict[str, list[str]]) -> None:
    """Create runs and drive each through the given events."""
    for run_id, events in states.items():
        engine.ctx.runs.create(run_id, {"verify": "true", "attempt": 1, "max_attempts": 1})
        for event in events:
            engine.ctx.runs.fire(run_id, event)


def test_the_scan_finds_interrupted_runs_and_not_finished_ones(engine: Engine) -> None:
    _runs_in(
        engine,
        {
            "run-pending": [],
            "run-delegating": ["start"],
            "run-writing": ["start", "generated"],
            "run-verifying": ["start", "generated", "written"],
            "run-done": ["start", "generated", "written", "passed"],
            "run-failed": ["start", "abort", "rolled_back"],
        },
    )
    found = {r.id: r.state for r in interrupted_runs(engine.ctx.runs)}
    assert found == {
        "run-pending": "pending",
        "run-delegating": "delegating",
        "run-writing": "writing",
        "run-verifying": "verifying",
    }


@pytest.mark.anyio
async def test_recovery_hands_each_interrupted_run_to_the_hook_once(engine: Engine) -> None:
    _runs_in(engine, {"run-a": ["start"], "run-b": ["start", "generated"], "run-c": ["start", "abort", "rolled_back"]})
    seen: list[tuple[str, str, int]] = []

    async def hook(record: MachineRecord) -> None:
        seen.append((record.id, record.state, record.data["recoveries"]))

    with anyio.fail_after(10):
        report = await recover(engine.delegations.driver.moves, hook)
    assert sorted(seen) == [("run-a", "delegating", 1), ("run-b", "writing", 1)]
    assert sorted(report.resumed) == ["run-a", "run-b"]
    assert engine.store.events("run-a")[-1].event == "recover"


@pytest.mark.anyio
async def test_a_run_that_keeps_crashing_is_aborted_with_a_reason(engine: Engine) -> None:
    _runs_in(engine, {"run-a": ["start"]})
    states: list[str] = []

    async def crashing_hook(record: MachineRecord) -> None:
        states.append(record.state)
        # Each "crash" leaves the run where it was, and its owner dead.
        with engine.store.transaction() as tx:
            tx.set_owner(record.id, None)

    with anyio.fail_after(10):
        for _ in range(4):
            await recover(engine.delegations.driver.moves, crashing_hook, max_recoveries=3)

    assert states == ["delegating", "delegating", "delegating", "rolling_back"]
    record = engine.store.get("run-a")
    assert record.state == "rolling_back"
    assert "gave up after 3 recoveries" in record.data["error"]


@pytest.mark.anyio
async def test_a_run_owned_by_a_live_process_is_left_alone(engine: Engine) -> None:
    _runs_in(engine, {"run-a": ["start"]})
    owner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        token = (
            subprocess.run(
                [sys.executable, "-c", "from engine.store.ownership import current_token; print(current_token())"],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
        # A token of a process that has exited is dead; the live helper's token is alive.
        assert not token_alive(token)
        live_token = token.rsplit(":", 2)[0] + f":{owner.pid}:?"
        assert token_alive(live_token)
        with engine.store.transaction() as tx:
            tx.set_owner("run-a", live_token)

        async def hook(record: MachineRecord) -> None:
            raise AssertionError("must not resume a run a live process owns")

        with anyio.fail_after(10):
            report = await recover(engine.delegations.driver.moves, hook)
        assert report.skipped == ["run-a"]
    finally:
        owner.stdin.close()  # type: ignore[union-attr]
        owner.wait(timeout=10)

    assert claim(engine.ctx.runs, "run-a") is not None
    assert engine.store.get("run-a").owner == current_token()


@pytest.mark.anyio
async def test_a_row_that_cannot_be_read_is_reported_with_its_id_and_the_others_resume(engine: Engine) -> None:
    _runs_in(engine, {"run-a": ["start"], "run-bad-json": ["start"], "run-bad-state": [], "run-z": ["start"]})
    with sqlite3.connect(engine.project.state_db) as conn:
        conn.execute("UPDATE machines SET data = '{\"task\": ' WHERE id = 'run-bad-json'")
        conn.execute("UPDATE machines SET state = 'teleporting' WHERE id = 'run-bad-state'")
    seen: list[str] = []

    async def hook(record: MachineRecord) -> None:
        seen.append(record.id)

    with anyio.fail_after(10):
        report = await recover(engine.delegations.driver.moves, hook)
    assert seen == ["run-a", "run-z"] and report.resumed == ["run-a", "run-z"]
    assert set(report.errors) == {"run-bad-json", "run-bad-state"}
    assert "not valid JSON" in report.errors["run-bad-json"]
    assert "'teleporting'" in report.errors["run-bad-state"] and "db forget run-bad-state" in report.errors[
        "run-bad-state"]
    assert [e.event for e in engine.store.events("run-bad-json")] == ["create", "start"]  # left alone


@pytest.mark.anyio
async def test_a_run_whose_recovery_fails_does_not_stop_the_next_one(engine: Engine) -> None:
    _runs_in(engine, {"run-a": ["start"], "run-b": ["start"]})

    async def hook(record: MachineRecord) -> None:
        if record.id == "run-a":
            raise UserError("run-a cannot go on: its files are locked")

    with anyio.fail_after(10):
        report = await recover(engine.delegations.driver.moves, hook)
    assert report.errors == {"run-a": "run-a cannot go on: its files are locked"} and report.resumed == ["run-b"]
