"""R5's verdicts on hand-made event sequences (each kind of edit, each conflict rule), and on a real round of runs
through an engine whose shared-tree rule is switched off: the harness must see the losses it exists to find."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import structlog

from bench.reliability.common import ScenarioResult
from bench.reliability.r5_classify import RunEnd, Verdicts, classify, final_hashes
from bench.reliability.r5_shared_tree import counting_tracebacks, run_in_process
from bench.reliability.r5_trace import Event
from engine.delegation import shared_tree, steps
from engine.store.journal import ABSENT

BASE, OURS, EDIT, OTHER = "sha256:base", "sha256:ours", "sha256:edit", "sha256:other"


def _e(kind: str, hash: str = "", *, run: str = "r", during: str = "writing", guard: bool = False,
       path: str = "a.py") -> Event:
    return Event(kind, path, hash=hash, run=run if kind not in ("edit", "setup") else "", during=during, guard=guard)


def _verdicts(events: Sequence[Event], *, base: str = BASE, state: str = "done", conflicts: Sequence[dict] = (),
              final: str | None = None) -> Verdicts:
    ordered = [Event(e.kind, e.path, e.hash, e.run, e.during, e.guard, e.label, seq=n) for n, e in enumerate(events)]
    writers = [e for e in ordered if e.kind in ("setup", "edit", "replace", "unlink")]
    last = final if final is not None else (writers[-1].hash if writers else ABSENT)
    runs = {"r": RunEnd("r", state, {"a.py": base}, {"a.py": b"ours"}, list(conflicts))}
    return classify(ordered, runs, {"a.py": last})


def _conflict(found: str = "changed", during: str = "writing") -> dict:
    return {"path": "a.py", "found": found, "during": during, "kept_at": ".claude/workflow/conflicts/r/a.py"}


def test_an_edit_the_guard_check_saw_and_the_rename_replaced_is_lost() -> None:
    v = _verdicts([_e("setup", BASE), _e("base", BASE), _e("edit", EDIT), _e("check", EDIT, guard=True),
                   _e("replace", OURS)], conflicts=[_conflict()])
    assert v.edits["lost"] == 1
    assert any("replaced by the run" in p for p in v.problems["r"])


def test_an_edit_between_the_guard_check_and_the_rename_is_in_the_window() -> None:
    v = _verdicts([_e("setup", BASE), _e("base", BASE), _e("check", BASE, guard=True), _e("edit", EDIT),
                   _e("replace", OURS)])
    assert dict(v.edits) == {"in_window": 1}
    assert not v.problems.get("r") and v.window_ns == [0]


def test_an_edit_made_before_packing_is_the_base_and_one_putting_the_base_back_later_is_reverted() -> None:
    before = _verdicts([_e("edit", EDIT), _e("base", EDIT), _e("check", EDIT, guard=True), _e("replace", OURS)],
                       base=EDIT)
    assert dict(before.edits) == {"base": 1}
    after = _verdicts([_e("base", ABSENT), _e("check", ABSENT, guard=True), _e("replace", OURS),
                       _e("edit", ABSENT), _e("check", ABSENT, guard=True), _e("replace", OURS)], base=ABSENT)
    assert dict(after.edits) == {"reverted": 1}
    assert not after.problems.get("r")


def test_a_rename_without_its_own_check_right_before_is_unguarded() -> None:
    v = _verdicts([_e("setup", BASE), _e("base", BASE), _e("check", BASE, guard=False), _e("edit", EDIT),
                   _e("replace", OURS)])
    assert v.edits["unguarded"] == 1 and v.problems["r"]


def test_an_edit_followed_by_the_editor_or_nothing_is_kept_and_must_be_on_disk_at_the_end() -> None:
    kept = _verdicts([_e("setup", BASE), _e("edit", EDIT), _e("edit", OTHER)])
    assert dict(kept.edits) == {"kept": 2} and not kept.problems.get("")
    vanished = _verdicts([_e("setup", BASE), _e("edit", EDIT)], final=BASE)
    assert vanished.problems[""] and "last recorded writer" in vanished.problems[""][0]


def test_a_foreign_version_seen_while_writing_must_be_reported_with_what_was_found() -> None:
    events = [_e("setup", BASE), _e("base", BASE), _e("edit", ABSENT), _e("check", ABSENT)]
    assert _verdicts(events).problems["r"] == [
        "a.py: the run saw someone else's version while writing but reported no conflict"]
    assert not _verdicts(events, conflicts=[_conflict("deleted")]).problems.get("r")
    wrong = _verdicts(events, conflicts=[_conflict("changed")]).problems["r"]
    assert wrong and "reported found=changed" in wrong[0]
    spurious = _verdicts([_e("setup", BASE), _e("base", BASE), _e("check", BASE)], conflicts=[_conflict()])
    assert spurious.problems["r"] and "no check of the run saw" in spurious.problems["r"][0]
    assert (spurious.conflicts_found, spurious.conflicts_reported) == (0, 1)


def test_a_rollback_only_owes_a_conflict_for_a_file_the_run_had_written() -> None:
    never_wrote = _verdicts([_e("setup", BASE), _e("base", BASE), _e("edit", EDIT),
                             _e("check", EDIT, during="rolling_back")], state="failed")
    assert never_wrote.conflicts_found == 0 and not never_wrote.problems.get("r")
    wrote = _verdicts([_e("setup", BASE), _e("base", BASE), _e("check", BASE, guard=True), _e("replace", OURS),
                       _e("edit", EDIT), _e("check", EDIT, during="rolling_back")], state="failed")
    assert wrote.conflicts_found == 1 and wrote.problems["r"]


def test_a_failed_run_may_not_leave_its_bytes_behind() -> None:
    v = _verdicts([_e("setup", BASE), _e("base", BASE), _e("check", BASE, guard=True), _e("replace", OURS)],
                  state="failed")
    assert v.problems["r"] == ["a.py holds the bytes of a run that ended failed"]
    restored = _verdicts([_e("setup", BASE), _e("base", BASE), _e("check", BASE, guard=True), _e("replace", OURS),
                          _e("check", OURS, guard=True, during="rolling_back"),
                          _e("replace", BASE, during="rolling_back")], state="failed")
    assert not restored.problems.get("r")


def test_final_hashes_reads_absent_files_as_absent(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"x")
    found = final_hashes(tmp_path, ["x", "missing", "x/below"])
    assert found["missing"] == found["x/below"] == ABSENT and found["x"].startswith("sha256:")


@pytest.mark.answer_form_json
def test_a_round_against_an_engine_without_the_rule_loses_edits(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shared_tree.replace_if
    monkeypatch.setattr(shared_tree, "apply_action", lambda current, w: shared_tree.Action.WRITE)
    monkeypatch.setattr(steps, "apply_action", lambda current, w: shared_tree.Action.WRITE)
    monkeypatch.setattr(shared_tree, "rollback_action",
                        lambda current, w: shared_tree.Action.WRITE if w.applied else shared_tree.Action.NOTHING)
    monkeypatch.setattr(shared_tree, "replace_if",
                        lambda path, content, *, expected: real(path, content, expected=lambda current: True))
    result = ScenarioResult("R5", "broken on purpose")
    figures = run_in_process(rounds=1, runs=10, seed=6, result=result)
    assert figures.lost > 0 and result.lost > 0
    assert figures.conflicts_found > figures.conflicts_reported == 0
    assert any("replaced by the run" in note or "removed by the run" in note for note in result.notes)


def test_a_logged_exception_is_counted_as_a_traceback() -> None:
    with counting_tracebacks() as seen:
        structlog.get_logger("r5-test").warning("no traceback here")
        try:
            raise ValueError("boom")
        except ValueError:
            structlog.get_logger("r5-test").exception("step failed")
    assert seen == ["step failed"]
