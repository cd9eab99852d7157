"""`local-llm eval`: a suite of mechanical tasks run as real delegations, judged by hidden checks.

- `tasks`: the suite as data (a directory per task: task.toml, files/, check/, solution/), loaded and checked
- `checks`: the hidden check, run after the delegation, and the proof that no request to the model held it
- `figures`: per-task rows, totals, the versioned report, its consistency rules, the comparison of two reports
- `runner`: each task in a scratch project of its own, through the engine handed to it (the facade)
"""

from __future__ import annotations

from engine.evaluation.checks import leaked_lines, requests_of, run_hidden_check
from engine.evaluation.figures import (
    OUTCOMES,
    REPORT_VERSION,
    compare_reports,
    consistency_problems,
    load_report,
    outcome,
    task_figures,
    totals,
)
from engine.evaluation.runner import EvalEngine, run_suite, run_task
from engine.evaluation.tasks import (
    EvalTask,
    OutputSpec,
    SuiteError,
    expand_command,
    hidden_lines,
    load_suite,
    load_task,
    prepare_project,
    select_tasks,
    visible_text,
)

__all__ = [
    "OUTCOMES",
    "REPORT_VERSION",
    "EvalEngine",
    "EvalTask",
    "OutputSpec",
    "SuiteError",
    "compare_reports",
    "consistency_problems",
    "expand_command",
    "hidden_lines",
    "leaked_lines",
    "load_report",
    "load_suite",
    "load_task",
    "outcome",
    "prepare_project",
    "requests_of",
    "run_hidden_check",
    "run_suite",
    "run_task",
    "select_tasks",
    "task_figures",
    "totals",
    "visible_text",
]
