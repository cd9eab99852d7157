"""The workflow engine: persisted machines, recovery, diagrams, and (in their own modules) backends and delegation."""

from __future__ import annotations

from engine.api import Engine
from engine.backends import BACKENDS
from engine.errors import InvalidArgument, UserError
from engine.lifecycle import EnableFailed
from engine.progress import Progress, no_progress
from engine.project import Project
from engine.runner import TASK_TYPES

__all__ = ["BACKENDS", "TASK_TYPES", "EnableFailed", "Engine", "InvalidArgument", "Progress", "Project", "UserError",
           "no_progress"]
