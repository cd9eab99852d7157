from __future__ import annotations

import pytest

from engine import Engine
from engine.store.db import StaleVersion
from engine.store.machines import InvalidEvent, TerminalState, new_id


def test_a_transition_updates_the_row_and_appends_one_journal_entry(engine: Engine) -> None:
    engine.ctx.runs.create("run-1", {"verify": "true", "attempt": 1, "max_attempts": 2})
    moved = engine.ctx.runs.fire("run-1", "start", data={"model": "m"}, payload={"why": "test"})

    assert (moved.state, moved.version, moved.data["model"]) == ("delegating", 2, "m")
    events = engine.store.events("run-1")
    assert [(e.event, e.src, e.dst, e.version) for e in events] == [
        ("create", None, "pending", 1),
        ("start", "pending", "delegating", 2),
    ]
    assert events[-1].payload == {"why": "test"}


def test_an_invalid_event_is_rejected_with_the_states_it_is_allowed_from(engine: Engine) -> None:
    engine.ctx.runs.create("run-1")
    with pytest.raises(InvalidEvent, match=r"'pending'; event 'passed' cannot happen now .*only from: verifying"):
        engine.ctx.runs.fire("run-1", "passed")
    assert engine.store.get("run-1").state == "pending"
    assert len(engine.store.events("run-1")) == 1


def test_an_unknown_event_is_named_in_the_error(engine: Engine) -> None:
    engine.ctx.runs.create("run-1")
    with pytest.raises(InvalidEvent, match="delegation machines have no event 'explode'"):
        engine.ctx.runs.fire("run-1", "explode")


def test_a_finished_run_stays_finished(engine: Engine) -> None:
    engine.ctx.runs.create("run-1")
    engine.ctx.runs.fire("run-1", "cancel", data={"cancel_requested": True})
    for event in ("start", "cancel", "abort", "rolled_back"):
        with pytest.raises(TerminalState, match="cannot change a finished run"):
            engine.ctx.runs.fire("run-1", event)
    assert engine.store.get("run-1").state == "cancelled"


def test_a_stale_expected_version_is_refused(engine: Engine) -> None:
    record = engine.ctx.runs.create("run-1")
    engine.ctx.runs.fire("run-1", "start")
    with pytest.raises(StaleVersion, match="expected version 1, found 2"):
        engine.ctx.runs.fire("run-1", "generated", expected_version=record.version)


def test_a_failure_in_the_same_transaction_leaves_neither_row_nor_journal_changed(engine: Engine) -> None:
    engine.ctx.runs.create("run-1")

    def explode(tx: object, record: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        engine.ctx.runs.fire("run-1", "start", after=explode)
    assert engine.store.get("run-1").state == "pending"
    assert [e.event for e in engine.store.events("run-1")] == ["create"]


def test_a_note_journals_data_without_moving_the_state(engine: Engine) -> None:
    engine.ctx.runs.create("run-1")
    noted = engine.ctx.runs.note("run-1", "recover", data={"recoveries": 1})
    assert (noted.state, noted.data["recoveries"], noted.version) == ("pending", 1, 2)
    assert engine.store.events("run-1")[-1].src == engine.store.events("run-1")[-1].dst == "pending"


def test_new_ids_carry_128_random_bits_so_a_task_id_cannot_be_guessed() -> None:
    ids = {new_id("run") for _ in range(1000)}
    assert len(ids) == 1000
    for made in ids:
        prefix, _, random_part = made.partition("-")
        assert prefix == "run" and len(random_part) == 32 and int(random_part, 16) >= 0


def test_a_run_made_with_an_old_short_id_is_still_read_and_moved(engine: Engine) -> None:
    engine.ctx.runs.create("run-0123456789ab", {"task": "t"})  # the 48-bit form made before
    engine.ctx.runs.fire("run-0123456789ab", "start")
    assert engine.store.get("run-0123456789ab").state == "delegating"
