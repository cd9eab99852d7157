"""Where a project's workflow state lives: `<project>/.claude/workflow/`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import UserError

__all__ = ["Project", "ProjectError"]

PROJECT_ENV = "LOCAL_LLM_PROJECT"


class ProjectError(UserError):
    pass


@dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> Project:
        """`--project DIR`, else $LOCAL_LLM_PROJECT, else the current directory."""
        chosen = explicit if explicit is not None else os.environ.get(PROJECT_ENV) or os.getcwd()
        root = Path(chosen).expanduser()
        if not root.is_dir():
            source = ("--project" if explicit is not None
                      else f"${PROJECT_ENV}" if os.environ.get(PROJECT_ENV) else "cwd")
            raise ProjectError(f"project directory {str(root)!r} (from {source}) does not exist; "
                               "pass an existing directory")
        return cls(root.resolve())

    @property
    def workflow_dir(self) -> Path:
        return self.root / ".claude" / "workflow"

    @property
    def state_db(self) -> Path:
        return self.workflow_dir / "state.db"

    @property
    def delegation_log(self) -> Path:
        return self.workflow_dir / "delegation-log.jsonl"

    @property
    def engine_log(self) -> Path:
        return self.workflow_dir / "engine.log"
