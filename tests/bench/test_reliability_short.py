"""The reliability harness in its short form (what CI runs): every scenario, a few cases each, nothing lost.

The harness functions are called in-process (R1, R4 and R8 start their own `local-llm` subprocesses); a lost case fails
the test with the harness's own notes. The whole short form takes well under 3 minutes on a 2-core machine.
"""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest

from bench.reliability import SCENARIOS, ScenarioResult, run_scenarios
from bench.reliability.__main__ import DEFAULT_SEED, format_table, main
from bench.reliability.common import REPO
from bench.reliability.r5_kill import KILL_POINTS
from tests.markers import needs_embedded


@functools.cache
def _short(scenario: str) -> ScenarioResult:
    [result] = run_scenarios([scenario], short=True, seed=DEFAULT_SEED)
    return result


@pytest.mark.answer_form_json
@pytest.mark.parametrize("scenario", [pytest.param(s, marks=needs_embedded) if s == "R9" else s for s in SCENARIOS])
def test_short_form_loses_nothing(scenario: str) -> None:
    result = _short(scenario)
    assert result.tried > 0
    assert result.lost == 0, format_table([result])
    assert result.survived == result.tried


@pytest.mark.answer_form_json
def test_r5_loses_no_edit_and_reports_every_conflict() -> None:
    result = _short("R5")
    total, killed = result.figures["total"], result.figures["kill9"]
    assert total["edits"] > 0 and killed["edits"] > 0
    assert total["lost"] == total["unguarded"] == total["unexplained"] == 0, format_table([result])
    assert total["conflicts_found"] > 0
    assert total["conflicts_reported"] == total["conflicts_found"]
    assert total["tracebacks"] == 0
    assert {"done", "failed", "cancelled"} <= set(total["runs_ended"])
    # The editor reached every state it aims at, and every kill point was edited around.
    aimed = set(total["edits_by_state"])
    assert {"delegating", "writing", "verifying", "rolling_back"} <= aimed
    assert {f"after the kill in {point}" for point in KILL_POINTS} <= aimed


@needs_embedded
def test_r9_a_backend_killed_behind_litellm_costs_no_child_and_enable_asked_the_gateway() -> None:
    # R9 (issue 20): two llama_cpp.server processes behind a real LiteLLM proxy, one SIGKILLed mid-batch.
    result = _short("R9")
    figures = result.figures
    assert result.lost == 0, format_table([result])
    assert (figures["num_ctx"], figures["slots"]) == (4096, 2)  # LiteLLM's /v1/model/info, no setting given
    assert figures["batch_state"] == "finished" and sum(figures["counts"].values()) == 4, figures
    assert all(a in (1, 2) for a in figures["attempts"]), figures  # every child started and ended


@pytest.mark.answer_form_json
def test_r8_kills_batches_mid_flight_and_every_child_ends_once() -> None:
    result = _short("R8")
    figures = result.figures
    assert figures["kills"] >= 3, format_table([result])  # the batch process and the resumes after it
    points = figures["kill_points"]
    assert points.get("a child in writing", 0) > 0 and points.get("a child in verifying", 0) > 0, points
    assert points.get("some children ended", 0) > 0, points  # killed in the middle of the batch, not only at its ends
    assert figures["child_recoveries"] > 0  # the resumes picked up children the kills interrupted
    assert figures["children_ended"].get("done", 0) > 0 and figures["children_ended"].get("failed", 0) > 0
    assert sum(figures["children_ended"].values()) == figures["children"]


def test_the_command_prints_only_the_table_and_exits_zero() -> None:
    # A real subprocess (stdout must carry the table alone); R2 is the quickest scenario.
    done = subprocess.run([sys.executable, "-m", "bench.reliability", "--short", "--only", "R2", "--seed", "3"],
                          capture_output=True, check=False, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and "seed 3" in lines[0]
    assert lines[1].split()[:6] == ["id", "scenario", "tried", "survived", "lost", "seconds"]
    assert lines[3].startswith("R2 ")


def test_bad_usage_is_refused() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--only", "R99"])
    assert exc.value.code == 2
