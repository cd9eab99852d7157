"""The built-in eval suite is well formed: enough tasks of every type, new files and edits, a file of several hundred
lines, languages beside Python, and hidden checks that are real (each passes on the task's reference solution and
fails on the starting files) and that the model never sees."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import anyio
import pytest

from engine import TASK_TYPES
from engine.delegation.verify import run_verify
from engine.evaluation import (
    EvalTask,
    expand_command,
    hidden_lines,
    load_suite,
    prepare_project,
    run_hidden_check,
    visible_text,
)
from mcp_adapter.cli.eval import builtin_suite

SUITE = load_suite(builtin_suite())
IDS = [t.id for t in SUITE]
TRIVIAL = load_suite(builtin_suite("trivial"))
BOTH = [*SUITE, *TRIVIAL]
BOTH_IDS = [*IDS, *(f"trivial-{t.id}" for t in TRIVIAL)]


def _project(task: EvalTask, root: Path, *, solved: bool) -> Path:
    project = root / task.id
    prepare_project(task, project)
    if solved:
        shutil.copytree(task.solution_dir, project, dirs_exist_ok=True)
    return project


def test_the_suite_has_at_least_15_tasks_with_unique_ids_covering_the_five_task_types() -> None:
    assert len(SUITE) >= 15 and len(set(IDS)) == len(IDS)
    counts = Counter(t.task_type for t in SUITE)
    assert set(counts) == set(TASK_TYPES) and min(counts.values()) >= 2


def test_the_suite_creates_new_files_and_edits_existing_ones_one_of_several_hundred_lines() -> None:
    assert {t.edits_existing for t in SUITE} == {True, False}
    assert any(t.edits_existing and t.describe()["largest_file_lines"] >= 300 for t in SUITE)


def test_the_suite_is_not_only_python() -> None:
    languages = Counter(t.language for t in SUITE)
    assert languages["python"] >= 1 and len(languages) >= 3, languages


def test_the_trivial_tier_has_at_least_ten_one_file_python_tasks_new_files_and_edits() -> None:
    assert len(TRIVIAL) >= 10 and len({t.id for t in TRIVIAL}) == len(TRIVIAL)
    assert all(len(t.outputs) == 1 and t.language == "python" and not t.context_files for t in TRIVIAL)
    assert {t.edits_existing for t in TRIVIAL} == {True, False}
    assert all(t.describe()["largest_file_lines"] <= 5 for t in TRIVIAL)


def test_every_task_ships_a_reference_solution_for_each_output_and_nothing_else() -> None:
    for task in BOTH:
        solution = sorted(p.relative_to(task.solution_dir).as_posix() for p in task.solution_dir.rglob("*")
                          if p.is_file())
        assert solution == sorted(o.path for o in task.outputs), task.id


def test_no_line_of_a_hidden_check_is_in_what_the_model_sees_and_each_check_has_lines_of_its_own() -> None:
    for task in BOTH:
        visible = visible_text(task)
        own = [line for line in hidden_lines(task) if line != task.hidden_check.strip()]
        assert own, f"{task.id}: the hidden check has no text of its own"
        assert not [line for line in hidden_lines(task) if line in visible], task.id
        assert "{check}" not in task.verify and not set(task.check_files()) & set(task.starting_files()), task.id


@pytest.mark.anyio
@pytest.mark.parametrize("task", BOTH, ids=BOTH_IDS)
async def test_the_hidden_check_passes_on_the_reference_solution_and_fails_on_the_starting_files(
    task: EvalTask, tmp_path: Path
) -> None:
    with anyio.fail_after(120):
        solved = await run_hidden_check(task, _project(task, tmp_path / "solved", solved=True))
        start = await run_hidden_check(task, _project(task, tmp_path / "start", solved=False))
    assert solved["passed"] is True, solved["output_tail"]
    assert start["passed"] is False and not start["timed_out"], start["output_tail"]


@pytest.mark.anyio
@pytest.mark.parametrize("task", BOTH, ids=BOTH_IDS)
async def test_the_visible_verify_passes_on_the_reference_solution(task: EvalTask, tmp_path: Path) -> None:
    project = _project(task, tmp_path, solved=True)
    with anyio.fail_after(120):
        outcome = await run_verify(expand_command(task.verify), cwd=project, timeout=60)
    assert outcome.passed, outcome.output_tail
