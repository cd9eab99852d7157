"""The eval's figures, pure: one task's row from its run result and hidden check, the totals, the report that
`--json` writes (versioned), the consistency rules every report keeps, and the comparison of two reports."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.evaluation.tasks import EvalTask

__all__ = [
    "OUTCOMES",
    "REPORT_VERSION",
    "compare_reports",
    "consistency_problems",
    "load_report",
    "outcome",
    "task_figures",
    "totals",
]

REPORT_VERSION = 1
OUTCOMES = ("passed", "failed_hidden_check", "failed_verify", "unusable_answer", "too_big", "broken")
"""passed: the run ended done and the hidden check passed. failed_hidden_check: the run's verify passed, the hidden
check did not. failed_verify: verify failed on the last attempt (the run rolled back). unusable_answer: no answer the
engine could apply. too_big: the prompt did not fit the context (refused before or by the model's server).
broken: the eval's plumbing went wrong (a conflict, a cancel, a backend error): the eval exits 1."""
COMPARED = ("tasks", "passed", "pass_rate", "first_try", "first_try_rate", "tokens", "tokens_per_passed", "seconds",
            "seconds_per_passed")
_RATE_DIGITS, _PER_DIGITS = 4, 2


def outcome(result: Mapping[str, Any], check: Mapping[str, Any]) -> str:
    """How a task ended, one of OUTCOMES."""
    state, error = result["state"], result.get("error") or ""
    if result.get("conflicts") or state not in ("done", "failed"):
        return "broken"
    if state == "done":
        if not check.get("ran"):
            return "broken"
        return "passed" if check.get("passed") else "failed_hidden_check"
    if result.get("prompt_overflow"):
        return "too_big"
    if (result.get("verification") or {}).get("passed") is False:
        return "failed_verify"
    if error.startswith("generation failed") and "backend error" not in error:
        return "unusable_answer"
    return "broken"


def task_figures(
    task: EvalTask, result: Mapping[str, Any], check: Mapping[str, Any], *, answer_form: str | None,
    leaked: Sequence[str] = (),
) -> dict[str, Any]:
    """One task's row of the report. A leak of the hidden check into a request makes the task `broken`."""
    kind = "broken" if leaked else outcome(result, check)
    attempts = int(result.get("attempts") or 0)
    error = result.get("error")
    return {
        "id": task.id, "task_type": task.task_type, "language": task.language,
        "edits_existing": task.edits_existing, "passed": kind == "passed", "outcome": kind,
        "first_try": kind == "passed" and attempts == 1, "attempts": attempts,
        "max_attempts": result.get("max_attempts"), "tokens": int(result.get("tokens_generated") or 0),
        "thinking_tokens": int(result.get("thinking_tokens") or 0),
        "prompt_tokens": int(result.get("prompt_tokens") or 0),
        "seconds": round(float(result.get("time_seconds") or 0.0), 3),
        "conflicts": len(result.get("conflicts") or []), "state": result["state"],
        "verify_passed": (result.get("verification") or {}).get("passed"),
        "hidden_check": dict(check), "hidden_check_leaked": list(leaked), "answer_form": answer_form,
        "model": result.get("model"), "run_id": result.get("run_id"),
        "error": error.splitlines()[0][:300] if error else None,
    }


def _ratio(part: float, whole: float, digits: int) -> float | None:
    return round(part / whole, digits) if whole else None


def totals(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The suite's figures: pass rate, first-try rate (passed at the first attempt), and what a passed task cost:
    every token and second the runs spent (failed runs included) divided by the tasks that passed."""
    count, passed = len(rows), sum(1 for r in rows if r["passed"])
    first = sum(1 for r in rows if r["first_try"])
    tokens, seconds = sum(r["tokens"] for r in rows), round(sum(r["seconds"] for r in rows), 3)
    by_type: dict[str, dict[str, int]] = {}
    for r in rows:
        group = by_type.setdefault(r["task_type"], {"tasks": 0, "passed": 0})
        group["tasks"] += 1
        group["passed"] += int(r["passed"])
    return {
        "tasks": count, "passed": passed, "pass_rate": _ratio(passed, count, _RATE_DIGITS),
        "first_try": first, "first_try_rate": _ratio(first, count, _RATE_DIGITS),
        "tokens": tokens, "tokens_per_passed": _ratio(tokens, passed, _PER_DIGITS),
        "seconds": seconds, "seconds_per_passed": _ratio(seconds, passed, _PER_DIGITS),
        "attempts": sum(r["attempts"] for r in rows), "conflicts": sum(r["conflicts"] for r in rows),
        "broken": sum(1 for r in rows if r["outcome"] == "broken"),
        "hidden_check_leaks": sum(1 for r in rows if r["hidden_check_leaked"]),
        "by_outcome": dict(sorted(Counter(r["outcome"] for r in rows).items())),
        "by_type": dict(sorted(by_type.items())),
    }


def _close(a: float | None, b: float | None, digits: int) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 10.0 ** -digits


def consistency_problems(report: Mapping[str, Any]) -> list[str]:
    """What does not add up in a report (empty when every figure follows from the per-task rows)."""
    problems = []
    if report.get("version") != REPORT_VERSION:
        problems.append(f"version {report.get('version')!r}, expected {REPORT_VERSION}")
    rows, t = report.get("tasks") or [], report.get("totals") or {}
    for r in rows:
        where = f"task {r.get('id')}"
        if r.get("outcome") not in OUTCOMES:
            problems.append(f"{where}: outcome {r.get('outcome')!r} is not one of {', '.join(OUTCOMES)}")
        if r.get("tokens", -1) < 0 or r.get("seconds", -1) < 0 or r.get("attempts", -1) < 0:
            problems.append(f"{where}: a negative count")
        if r.get("outcome") not in ("too_big", "broken") and r.get("attempts", 0) < 1:
            problems.append(f"{where}: {r.get('outcome')} after {r.get('attempts')} attempts")
        if r.get("passed") != (r.get("outcome") == "passed"):
            problems.append(f"{where}: passed is {r.get('passed')} but the outcome is {r.get('outcome')}")
        if r.get("passed") and not (r.get("state") == "done" and r.get("verify_passed") is not False
                                    and (r.get("hidden_check") or {}).get("passed")):
            problems.append(f"{where}: passed without a done run and a passed hidden check")
        if r.get("first_try") != (bool(r.get("passed")) and r.get("attempts") == 1):
            problems.append(f"{where}: first_try is {r.get('first_try')} with {r.get('attempts')} attempt(s)")
    if [r.get("id") for r in rows] != list(dict.fromkeys(r.get("id") for r in rows)):
        problems.append("a task appears twice")
    try:
        expected = totals(rows)
    except (KeyError, TypeError) as exc:
        return [*problems, f"the task rows cannot be totalled: {exc!r}"]
    for key, value in expected.items():
        digits = _RATE_DIGITS if key.endswith("_rate") else _PER_DIGITS if key.endswith("_passed") else 3
        same = _close(t.get(key), value, digits) if isinstance(value, float) or value is None else t.get(key) == value
        if not same:
            problems.append(f"totals.{key} is {t.get(key)!r}; the task rows give {value!r}")
    if t.get("first_try", 0) > t.get("passed", 0):
        problems.append("more first-try passes than passes")
    return problems


def load_report(path: Path) -> dict[str, Any]:
    """A report written by `eval --json`, checked (version, consistency); UserError names the file."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not an eval report (not JSON: {exc})") from None
    if not isinstance(report, dict) or report.get("version") != REPORT_VERSION:
        found = report.get("version") if isinstance(report, dict) else None
        raise UserError(f"{path}: not an eval report of version {REPORT_VERSION} (version {found!r}); write it "
                        "with `local-llm eval --json FILE`")
    if problems := consistency_problems(report):
        raise UserError(f"{path}: its figures do not add up: {problems[0]}")
    return report


def _side(report: Mapping[str, Any], path: str) -> dict[str, Any]:
    return {"file": path, "model": report.get("model"), "backend": report.get("backend"),
            "answer_form": report.get("answer_form"), "when": report.get("when"), "machine": report.get("machine")}


def _task_side(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: row[k] for k in ("passed", "outcome", "attempts", "tokens", "seconds", "conflicts")}


def _diff(a: Any, b: Any) -> Any:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return None
    return round(b - a, 4)


def compare_reports(a: Mapping[str, Any], b: Mapping[str, Any], *, names: tuple[str, str] = ("A", "B")
                    ) -> dict[str, Any]:
    """Two reports side by side: each task (what changed from A to B) and the totals over the tasks both ran
    (the tasks only one of them ran are listed, not counted)."""
    rows_a, rows_b = ({r["id"]: r for r in rep["tasks"]} for rep in (a, b))
    ids = list(dict.fromkeys([*rows_a, *rows_b]))
    tasks = []
    for task_id in ids:
        ra, rb = rows_a.get(task_id), rows_b.get(task_id)
        if ra is None or rb is None:
            change = "only_a" if rb is None else "only_b"
        else:
            change = "same" if ra["passed"] == rb["passed"] else "gained" if rb["passed"] else "lost"
        tasks.append({"id": task_id, "task_type": (ra or rb or {}).get("task_type"), "change": change,
                      "a": _task_side(ra), "b": _task_side(rb)})
    common = [i for i in ids if i in rows_a and i in rows_b]
    ta, tb = totals([rows_a[i] for i in common]), totals([rows_b[i] for i in common])
    return {
        "a": _side(a, names[0]), "b": _side(b, names[1]), "common_tasks": len(common),
        "only_a": [i for i in ids if i not in rows_b], "only_b": [i for i in ids if i not in rows_a],
        "gained": [t["id"] for t in tasks if t["change"] == "gained"],
        "lost": [t["id"] for t in tasks if t["change"] == "lost"],
        "totals": {k: {"a": ta[k], "b": tb[k], "diff": _diff(ta[k], tb[k])} for k in COMPARED},
        "tasks": tasks,
    }
