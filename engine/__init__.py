"""The workflow engine. Its public API is the `Engine` facade and the names below; the sub-packages are its rooms:

- `engine.store`: the durable store (SQLite tables, migrations, persisted machines, ownership, recovery)
- `engine.executor`: the model side (backends, prompts, answer parsing)
- `engine.session`: the session machine's driver (enable/disable/status, backend preparation, GPU detection)
- `engine.delegation`: delegation runs (request checks, driver and steps, files, verify, views, the delegation log)
- `engine.diagrams`: state diagrams (extract -> plain model -> Mermaid / DOT / SVG)
- `engine.evaluation`: `local-llm eval`, a suite of tasks as data, run as real delegations, judged by hidden checks
- `engine.testing`: test doubles shipped for the test suite and the benchmarks
"""

from __future__ import annotations

from engine.api import Engine
from engine.delegation.requests import TASK_TYPES
from engine.errors import InvalidArgument, UserError
from engine.evaluation import EvalTask, compare_reports, load_report, load_suite, run_suite, select_tasks
from engine.executor.answers import ANSWER_FORMS
from engine.executor.backends import BACKENDS
from engine.executor.backends.base import THINK_LEVELS
from engine.progress import Progress, no_progress
from engine.project import Project
from engine.session.lifecycle import EnableFailed, SessionBusy, SessionFailed
from engine.store.health import DamagedRow, DatabaseDamaged, DatabaseUnavailable
from states import OutputFile

__all__ = [
    "ANSWER_FORMS",
    "BACKENDS",
    "TASK_TYPES",
    "THINK_LEVELS",
    "DamagedRow",
    "DatabaseDamaged",
    "DatabaseUnavailable",
    "EnableFailed",
    "Engine",
    "EvalTask",
    "InvalidArgument",
    "OutputFile",
    "Progress",
    "Project",
    "SessionBusy",
    "SessionFailed",
    "UserError",
    "compare_reports",
    "load_report",
    "load_suite",
    "no_progress",
    "run_suite",
    "select_tasks",
]
