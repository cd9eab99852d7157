"""The runner on the built-in suite's own tasks, through the real engine with scripted answers: a reference
solution passes at the first attempt, an answer that only satisfies the visible verify fails the hidden check, and
no request the model got ever holds the hidden check."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine, Project
from engine.evaluation import (
    EvalTask,
    consistency_problems,
    hidden_lines,
    leaked_lines,
    load_suite,
    requests_of,
    run_suite,
    select_tasks,
)
from engine.executor.edits.synth import blocks_for
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from mcp_adapter.cli.eval import builtin_suite

pytestmark = pytest.mark.anyio

SUITE = load_suite(builtin_suite())
HALF_SLUGIFY = "def slugify(text: str) -> str:\n    return text.lower().replace(', ', '-').strip('!')\n"


def _solution(task: EvalTask) -> dict[str, str]:
    return {o.path: (task.solution_dir / o.path).read_text() for o in task.outputs}


class ScriptedEngines:
    """`open_engine` for run_suite: a real Engine per scratch project, its model a ScriptedBackend answering what
    the test wrote for that task; every backend kept, to read what the model was sent."""

    def __init__(self, answers: dict[str, list[str]], *, num_ctx: int = 32768) -> None:
        self.answers = answers
        self.num_ctx = num_ctx
        self.backends: dict[str, ScriptedBackend] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.ended = 0

    def __call__(self, project: Path) -> Any:
        backend = ScriptedBackend().reply(*self.answers[project.name])
        self.backends[project.name] = backend
        engine = Engine(Project.resolve(project))
        use_backend(engine, backend, model="scripted-coder", num_ctx=self.num_ctx)
        return _Engine(self, engine, project.name)


class _Engine:
    def __init__(self, owner: ScriptedEngines, engine: Engine, task_id: str) -> None:
        self.owner, self.engine, self.task_id = owner, engine, task_id

    async def enable(self, **_: Any) -> dict[str, Any]:
        return {"model": "scripted-coder", "backend": "scripted", "vram": {"gpus": [{"name": "none"}]}}

    async def delegate(self, **request: Any) -> dict[str, Any]:
        return await self.engine.delegate(**request)

    def run_view(self, run_id: str) -> dict[str, Any]:
        view = self.engine.run_view(run_id)
        self.owner.views[self.task_id] = view
        return view

    async def end_session(self) -> dict[str, Any]:
        self.owner.ended += 1
        return {}

    def close(self) -> None:
        self.engine.close()


async def _run(engines: ScriptedEngines, ids: list[str], **options: Any) -> dict[str, Any]:
    with anyio.fail_after(120):
        return await run_suite(select_tasks(SUITE, ids), open_engine=engines, suite_size=len(SUITE), **options)


def _sent(backend: ScriptedBackend) -> list[str]:
    return [m.content for request in backend.requests for m in request.messages]


@pytest.mark.answer_form_json
async def test_reference_solutions_pass_at_the_first_attempt_and_the_figures_add_up(tmp_path: Path) -> None:
    ids = ["gen-slugify", "refactor-rename-across-files", "docs-scheduler-parse-duration"]
    tasks = {t.id: t for t in select_tasks(SUITE, ids)}
    engines = ScriptedEngines({i: [files_answer(_solution(tasks[i]))] for i in ids})
    report = await _run(engines, ids, scratch=tmp_path / "scratch")
    assert [(r["id"], r["outcome"], r["attempts"], r["first_try"]) for r in report["tasks"]] == [
        (i, "passed", 1, True) for i in sorted(ids)]
    assert all(r["hidden_check"]["ran"] and r["verify_passed"] and r["answer_form"] == "json"
               for r in report["tasks"])
    t = report["totals"]
    assert (t["tasks"], t["passed"], t["pass_rate"], t["first_try_rate"], t["broken"]) == (3, 3, 1.0, 1.0, 0)
    assert t["tokens_per_passed"] == round(t["tokens"] / 3, 2) > 0
    assert consistency_problems(report) == []
    assert (report["model"], report["backend"], report["answer_form"]) == ("scripted-coder", "scripted", "json")
    assert report["suite"] == {"size": len(SUITE), "ran": sorted(ids)} and report["machine"]["gpus"] == ["none"]
    assert engines.ended == 1  # the session ends once, after the last task
    kept = tmp_path / "scratch" / "gen-slugify"
    assert (kept / "slugs.py").read_text() == _solution(tasks["gen-slugify"])["slugs.py"]


@pytest.mark.answer_form_json
async def test_an_answer_that_only_satisfies_the_visible_verify_fails_the_hidden_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    engines = ScriptedEngines({"gen-slugify": [files_answer({"slugs.py": HALF_SLUGIFY})]})
    report = await _run(engines, ["gen-slugify"])
    assert report["scratch"] is None and list(tmp_path.iterdir()) == []  # the scratch projects and check copies
    row = report["tasks"][0]
    assert (row["state"], row["verify_passed"], row["outcome"], row["passed"]) == (
        "done", True, "failed_hidden_check", False)
    assert "slugify('  Many   spaces  here ') returned" in row["hidden_check"]["output_tail"]
    assert report["totals"]["tokens_per_passed"] is None and consistency_problems(report) == []


@pytest.mark.answer_form_json
async def test_a_failed_verify_is_retried_with_its_output_and_the_hidden_check_never_runs(tmp_path: Path) -> None:
    wrong = files_answer({"slugs.py": "def slugify(text):\n    return text\n"})
    engines = ScriptedEngines({"gen-slugify": [wrong, wrong]})
    report = await _run(engines, ["gen-slugify"], max_attempts=2)
    row = report["tasks"][0]
    assert (row["outcome"], row["attempts"], row["max_attempts"], row["hidden_check"]["ran"]) == (
        "failed_verify", 2, 2, False)
    assert len(engines.backends["gen-slugify"].requests) == 2
    assert "AssertionError" in engines.views["gen-slugify"]["data"]["history"][0]["detail"]


async def test_no_request_the_model_got_holds_any_of_the_hidden_check(tmp_path: Path) -> None:
    ids = ["gen-slugify", "test-roman", "refactor-sh-quote-vars"]
    tasks = {t.id: t for t in select_tasks(SUITE, ids)}
    wrong = files_answer({"slugs.py": "def slugify(text):\n    return text\n"})
    engines = ScriptedEngines({"gen-slugify": [wrong] * 3, "test-roman": ["not an answer"] * 3,
                               "refactor-sh-quote-vars": [files_answer({"archive.sh": "if then\n"})] * 3})
    report = await _run(engines, ids)
    assert report["totals"]["hidden_check_leaks"] == 0 and report["totals"]["broken"] == 0
    for task_id, backend in engines.backends.items():
        sent = _sent(backend)
        assert len(backend.requests) == 3 and sent
        secret = hidden_lines(tasks[task_id])
        assert secret and not [line for line in secret if any(line in text for text in sent)]
        check_files = [p.read_text() for p in tasks[task_id].check_files().values()]
        assert not [c for c in check_files if any(c in text for text in sent)]
        # what the runner searches (read back from the stored run) is what the backend was sent
        assert all(any(piece in text for text in sent) for piece in requests_of(engines.views[task_id]))


def test_a_hidden_line_in_a_request_is_reported_as_a_leak() -> None:
    task = select_tasks(SUITE, ["gen-slugify"])[0]
    line = next(line for line in hidden_lines(task) if "many-spaces-here" in line)
    assert leaked_lines(task, ["system prompt", f"user prompt\n{line}\n"]) == [line]
    assert leaked_lines(task, ["system prompt", "user prompt"]) == []


async def test_the_large_file_task_runs_in_the_edit_form_with_blocks_for_the_renamed_method(tmp_path: Path) -> None:
    task = select_tasks(SUITE, ["refactor-scheduler-rename-method"])[0]
    base = (task.files_dir / "scheduler.py").read_text()
    answer = blocks_for(base, _solution(task)["scheduler.py"], path="scheduler.py")
    engines = ScriptedEngines({task.id: [answer]})
    report = await _run(engines, [task.id], answer_form="edits")
    row = report["tasks"][0]
    assert (row["outcome"], row["answer_form"], row["edits_existing"]) == ("passed", "edits", True)
    assert report["answer_form"] == "edits" and len(base.splitlines()) >= 300



async def test_a_task_refused_as_too_big_used_no_answer_form_and_leaves_the_reports_form_alone() -> None:
    # The standard tier's report once said "answer form ['auto', 'whole']": a run refused before its prompt was
    # packed never resolved its form, and "auto" was reported as if it were one.
    ids = ["gen-slugify", "refactor-scheduler-rename-method"]
    engines = ScriptedEngines({i: [] for i in ids}, num_ctx=4096)
    report = await _run(engines, ids, max_attempts=1)
    rows = {t["id"]: t for t in report["tasks"]}
    assert rows["refactor-scheduler-rename-method"]["outcome"] == "too_big"
    assert rows["refactor-scheduler-rename-method"]["answer_form"] is None
    assert rows["gen-slugify"]["answer_form"] == report["answer_form"] == "edits"
