"""The workflow engine: persisted machines, recovery, diagrams, and (in their own modules) backends and delegation."""

from __future__ import annotations

from engine.api import Engine
from engine.logs import default_to_stderr
from engine.errors import InvalidArgument, UserError
from engine.project import Project

__all__ = ["Engine", "InvalidArgument", "Project", "UserError"]

default_to_stderr()
