"""Running the suite: each task a real delegation in a scratch project of its own, through the same engine as
`delegate`, then its hidden check; the report of `local-llm eval`.

The runner is handed a way to open an engine on a directory (the facade, `Engine`, from the caller: nothing inside
engine/ imports it), so what it drives is exactly what `delegate` drives: enable, delegate, the run's stored view.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import anyio

from engine.evaluation.checks import leaked_lines, requests_of, run_hidden_check
from engine.evaluation.figures import REPORT_VERSION, task_figures, totals
from engine.evaluation.tasks import EvalTask, expand_command, prepare_project
from engine.progress import Progress, no_progress
from states import OutputFile, RunData

__all__ = ["EvalEngine", "run_suite", "run_task"]

NOT_RUN: dict[str, Any] = {"ran": False, "passed": None, "exit_code": None, "output_tail": "", "timed_out": False,
                           "seconds": 0.0}
"""The hidden check of a run that did not end `done`: it rolled back, so the check would judge the starting files."""


END_TIMEOUT_S = 30.0


class EvalEngine(Protocol):
    """What the runner needs of an engine (the `Engine` facade has it)."""

    async def enable(self, *, llm: str | bool | None = True, backend: str | None = None, slots: int | None = None,
                     answer_form: str | None = None, progress: Progress = no_progress) -> dict[str, Any]: ...

    async def delegate(
        self, *, task: str, output_files: Sequence[str | OutputFile], task_type: str | None = None,
        context_files: Sequence[str] | None = None, verify: str | None = None, max_attempts: int | None = None,
        verify_timeout: float | None = None, wait: float | None = None, progress: Progress = no_progress,
        answer_form: str | None = None,
    ) -> dict[str, Any]: ...

    def run_view(self, run_id: str) -> dict[str, Any]: ...

    async def end_session(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def _machine(status: dict[str, Any]) -> dict[str, Any]:
    gpus = [g.get("name") for g in (status.get("vram") or {}).get("gpus") or [] if isinstance(g, dict)]
    return {"system": platform.system(), "release": platform.release(), "arch": platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "gpus": gpus}


def _task_progress(progress: Progress, index: int, count: int, task_id: str) -> Progress:
    """The engine's progress of one task (load, attempts, tokens) on the suite's bar: tasks done out of all."""
    async def report(done: float, total: float | None, message: str) -> None:
        await progress(index, count, f"{index + 1}/{count} {task_id}: {message}")

    return report


async def _end(engine: EvalEngine) -> None:
    """The session ends with the eval (unload unless `:persist`), even when the eval was cancelled."""
    try:
        with anyio.CancelScope(shield=True), anyio.move_on_after(END_TIMEOUT_S):
            await engine.end_session()
    finally:
        engine.close()


async def run_task(
    engine: EvalEngine, task: EvalTask, project: Path, *, answer_form: str | None = None,
    max_attempts: int | None = None, progress: Progress = no_progress,
) -> dict[str, Any]:
    """One delegation of `task` in `project` (prepared, its model enabled), then its hidden check: the task's row."""
    result = await engine.delegate(
        task=task.task, task_type=task.task_type, context_files=list(task.context_files),
        output_files=[o.as_request() for o in task.outputs], verify=expand_command(task.verify),
        max_attempts=max_attempts or task.max_attempts, verify_timeout=task.verify_timeout, wait=None,
        progress=progress, answer_form=answer_form,
    )
    view = engine.run_view(result["run_id"])
    form: str | None = RunData.from_json(view["data"]).answer_form
    if form == "auto":
        form = None  # never resolved: the run ended before its prompt was packed (too big), so no form was used
    check = await run_hidden_check(task, project) if result["state"] == "done" else dict(NOT_RUN)
    return task_figures(task, result, check, answer_form=form, leaked=leaked_lines(task, requests_of(view)))


async def run_suite(
    tasks: Sequence[EvalTask], *, open_engine: Callable[[Path], EvalEngine], llm: str | bool | None = True,
    backend: str | None = None, answer_form: str | None = None, max_attempts: int | None = None,
    scratch: Path | None = None, progress: Progress = no_progress, suite_size: int | None = None,
) -> dict[str, Any]:
    """Every task in a scratch project of its own under `scratch` (kept), or under a temporary directory (removed);
    the report (REPORT_VERSION). The model is enabled in each project (loaded once: later enables find it loaded)
    and the session ends after the last task (unloaded unless `:persist`)."""
    started, when = time.monotonic(), datetime.now(UTC).isoformat(timespec="seconds")
    root = scratch or Path(tempfile.mkdtemp(prefix="local-llm-eval-"))
    rows: list[dict[str, Any]] = []
    status: dict[str, Any] = {}
    engine: EvalEngine | None = None
    try:
        for index, task in enumerate(tasks):
            if engine is not None:
                engine.close()  # the previous task's; its model stays loaded for this one
                engine = None
            on_task = _task_progress(progress, index, len(tasks), task.id)
            project = root / task.id
            if project.exists():
                raise FileExistsError(f"{project} exists: give --dir an empty or new directory")
            prepare_project(task, project)
            engine = open_engine(project)
            status = await engine.enable(llm=llm, backend=backend, answer_form=answer_form, progress=on_task)
            rows.append(await run_task(engine, task, project, answer_form=answer_form, max_attempts=max_attempts,
                                       progress=on_task))
        await progress(len(tasks), len(tasks), "done")
    finally:
        if engine is not None:
            await _end(engine)
        if scratch is None:
            shutil.rmtree(root, ignore_errors=True)
    forms = sorted({r["answer_form"] for r in rows if r["answer_form"]})
    return {
        "version": REPORT_VERSION, "when": when, "machine": _machine(status), "model": status.get("model"),
        "backend": status.get("backend"), "answer_form": forms[0] if len(forms) == 1 else (forms or None),
        "max_attempts": max_attempts,
        "suite": {"size": suite_size if suite_size is not None else len(tasks), "ran": [t.id for t in tasks]},
        "scratch": str(scratch) if scratch else None, "wall_seconds": round(time.monotonic() - started, 3),
        "tasks": rows, "totals": totals(rows),
    }
