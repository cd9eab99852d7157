"""The eval's figures: how a task ended, the totals, the rules every report keeps, and two reports compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import UserError
from engine.evaluation import (
    REPORT_VERSION,
    EvalTask,
    OutputSpec,
    compare_reports,
    consistency_problems,
    load_report,
    outcome,
    task_figures,
    totals,
)

RAN = {"ran": True, "passed": True, "exit_code": 0, "output_tail": "ok", "timed_out": False, "seconds": 0.1}
FAILED_CHECK = {**RAN, "passed": False, "exit_code": 1}
NOT_RUN = {"ran": False, "passed": None, "exit_code": None, "output_tail": "", "timed_out": False, "seconds": 0.0}


def _task(task_id: str = "gen-a", task_type: str = "generate") -> EvalTask:
    return EvalTask(id=task_id, root=Path("/nonexistent"), task_type=task_type, language="python", summary="s",
                    task="t", context_files=(), outputs=(OutputSpec("a.py"),), verify="true", hidden_check="true")


def _result(state: str = "done", *, attempts: int = 1, tokens: int = 100, seconds: float = 2.0,
            **extra: Any) -> dict[str, Any]:
    verification = {"passed": state == "done"}
    return {"run_id": "run-1", "state": state, "attempts": attempts, "max_attempts": 3, "tokens_generated": tokens,
            "thinking_tokens": 0, "prompt_tokens": 500, "time_seconds": seconds, "conflicts": [],
            "verification": verification, "error": None if state == "done" else "failed", "model": "m", **extra}


def _row(task_id: str, passed: bool, *, attempts: int = 1, tokens: int = 100, seconds: float = 2.0,
         task_type: str = "generate") -> dict[str, Any]:
    if passed:
        return task_figures(_task(task_id, task_type), _result(attempts=attempts, tokens=tokens, seconds=seconds),
                            RAN, answer_form="json")
    result = _result("failed", attempts=attempts, tokens=tokens, seconds=seconds,
                     verification={"passed": False})
    return task_figures(_task(task_id, task_type), result, NOT_RUN, answer_form="json")


def _report(rows: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {"version": REPORT_VERSION, "when": "2026-11-25T00:00:00+00:00", "model": "m", "backend": "embedded",
            "answer_form": "json", "machine": {}, "tasks": rows, "totals": totals(rows), **meta}


@pytest.mark.parametrize(("result", "check", "expected"), [
    (_result(), RAN, "passed"),
    (_result(), FAILED_CHECK, "failed_hidden_check"),
    (_result("failed", verification={"passed": False}), NOT_RUN, "failed_verify"),
    (_result("failed", verification={"passed": None}, error="generation failed after 3 attempt(s): no JSON"),
     NOT_RUN, "unusable_answer"),
    (_result("failed", prompt_overflow={"prompt_tokens": 9000}, error="the prompt does not fit"), NOT_RUN,
     "too_big"),
    (_result("failed", verification={"passed": None}, error="generation failed: backend error: gone"), NOT_RUN,
     "broken"),
    (_result("failed", conflicts=[{"path": "a.py"}]), NOT_RUN, "broken"),
    (_result("cancelled"), NOT_RUN, "broken"),
    (_result(), NOT_RUN, "broken"),
])
def test_each_way_a_task_ends_has_its_outcome(result: dict[str, Any], check: dict[str, Any], expected: str) -> None:
    assert outcome(result, check) == expected


def test_a_leaked_hidden_check_makes_the_task_broken_whatever_the_model_did() -> None:
    row = task_figures(_task(), _result(), RAN, answer_form="edits", leaked=["assert two() == 2"])
    assert row["outcome"] == "broken" and not row["passed"] and row["hidden_check_leaked"] == ["assert two() == 2"]


def test_totals_count_passes_first_tries_and_what_a_passed_task_cost_failures_included() -> None:
    rows = [_row("gen-a", True, tokens=100, seconds=2.0), _row("gen-b", True, attempts=2, tokens=300, seconds=5.0),
            _row("test-c", False, attempts=3, tokens=200, seconds=8.0, task_type="test"),
            _row("test-d", False, attempts=3, tokens=0, seconds=1.0, task_type="test")]
    t = totals(rows)
    assert (t["tasks"], t["passed"], t["pass_rate"], t["first_try"], t["first_try_rate"]) == (4, 2, 0.5, 1, 0.25)
    assert (t["tokens"], t["tokens_per_passed"], t["seconds"], t["seconds_per_passed"]) == (600, 300.0, 16.0, 8.0)
    assert t["attempts"] == 9 and t["by_outcome"] == {"failed_verify": 2, "passed": 2}
    assert t["by_type"] == {"generate": {"tasks": 2, "passed": 2}, "test": {"tasks": 2, "passed": 0}}
    assert consistency_problems(_report(rows)) == []


def test_with_nothing_passed_the_per_passed_figures_are_none_not_a_division_by_zero() -> None:
    t = totals([_row("gen-a", False)])
    assert (t["pass_rate"], t["tokens_per_passed"], t["seconds_per_passed"]) == (0.0, None, None)
    assert totals([])["pass_rate"] is None


@pytest.mark.parametrize(("spoil", "problem"), [
    (lambda r: r["totals"].update(passed=3), "totals.passed is 3; the task rows give 1"),
    (lambda r: r["totals"].update(pass_rate=0.9), "totals.pass_rate is 0.9; the task rows give 0.5"),
    (lambda r: r["totals"].update(tokens_per_passed=1.0), "totals.tokens_per_passed is 1.0"),
    (lambda r: r["tasks"][0].update(first_try=False), "task gen-a: first_try is False with 1 attempt(s)"),
    (lambda r: r["tasks"][1].update(passed=True), "task gen-b: passed is True but the outcome is failed_verify"),
    (lambda r: r["tasks"][1].update(attempts=0), "task gen-b: failed_verify after 0 attempts"),
    (lambda r: r["tasks"][1].update(tokens=-5), "task gen-b: a negative count"),
    (lambda r: r["tasks"][0]["hidden_check"].update(passed=False), "passed without a done run and a passed hidden"),
    (lambda r: r["tasks"].append(dict(r["tasks"][0])), "a task appears twice"),
    (lambda r: r.update(version=0), "version 0, expected 1"),
])
def test_a_report_whose_figures_do_not_add_up_is_caught(spoil: Any, problem: str) -> None:
    report = _report([_row("gen-a", True), _row("gen-b", False)])
    report = json.loads(json.dumps(report))
    spoil(report)
    assert any(problem in p for p in consistency_problems(report)), consistency_problems(report)


def test_a_report_file_is_loaded_only_when_it_is_a_consistent_report_of_this_version(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_report([_row("gen-a", True)])))
    assert load_report(good)["totals"]["passed"] == 1
    for name, text, message in [("bad.json", "{", r"not an eval report \(not JSON"),
                                ("old.json", json.dumps({"version": 0}), "not an eval report of version 1"),
                                ("list.json", "[]", "not an eval report of version 1")]:
        (tmp_path / name).write_text(text)
        with pytest.raises(UserError, match=message):
            load_report(tmp_path / name)
    spoiled = _report([_row("gen-a", True)])
    spoiled["totals"]["passed"] = 0
    (tmp_path / "spoiled.json").write_text(json.dumps(spoiled))
    with pytest.raises(UserError, match="its figures do not add up: totals.passed is 0"):
        load_report(tmp_path / "spoiled.json")
    with pytest.raises(UserError, match="cannot read it"):
        load_report(tmp_path / "absent.json")


def test_two_reports_compare_task_by_task_and_on_the_totals_of_the_tasks_both_ran() -> None:
    a = _report([_row("gen-a", True, tokens=100), _row("gen-b", False, attempts=3), _row("gen-c", True)],
                model="small")
    b = _report([_row("gen-a", True, attempts=2, tokens=50), _row("gen-b", True), _row("gen-d", True)],
                model="big")
    c = compare_reports(a, b, names=("a.json", "b.json"))
    assert (c["a"]["model"], c["b"]["model"], c["a"]["file"]) == ("small", "big", "a.json")
    assert [(t["id"], t["change"]) for t in c["tasks"]] == [
        ("gen-a", "same"), ("gen-b", "gained"), ("gen-c", "only_a"), ("gen-d", "only_b")]
    assert c["gained"] == ["gen-b"] and c["lost"] == [] and (c["only_a"], c["only_b"]) == (["gen-c"], ["gen-d"])
    assert c["common_tasks"] == 2 and c["tasks"][2]["b"] is None
    assert c["totals"]["passed"] == {"a": 1, "b": 2, "diff": 1}
    assert c["totals"]["pass_rate"] == {"a": 0.5, "b": 1.0, "diff": 0.5}
    assert c["totals"]["first_try"] == {"a": 1, "b": 1, "diff": 0}
    assert c["totals"]["tokens_per_passed"] == {"a": 200.0, "b": 75.0, "diff": -125.0}
    assert compare_reports(b, b)["totals"]["seconds"]["diff"] == 0
