"""Where git runs hooks from for a project: the directory `core.hooksPath` names (husky sets `.husky/_`), asked of
git itself (`git rev-parse --git-path hooks` honours the setting at every level: repository, global, system).

A hooks directory ending in `/_` is husky's: its stubs run `<parent>/<hook>`, so the parent holds code git runs too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import structlog

__all__ = ["GIT_TIMEOUT_S", "hook_directories"]

GIT_TIMEOUT_S = 5.0
log = structlog.get_logger(__name__)


def _git_env() -> dict[str, str]:
    # GIT_DIR and friends (set when the server itself runs inside a git hook) would point git at another repository.
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_TERMINAL_PROMPT": "0"}


def hook_directories(root: Path) -> list[Path]:
    """The real paths of the directories holding hooks git runs for the repository `root` is in: the hooks
    directory (core.hooksPath, else `.git/hooks`), and its parent when its name is `_`. Empty when `root` is in no
    repository or git is not installed."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks"], cwd=root, env=_git_env(), capture_output=True, text=True,
            timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("git not asked for the hooks directory", error=str(exc))
        return []
    line = found.stdout.strip()
    if found.returncode != 0 or not line:
        return []
    hooks = Path(os.path.realpath(Path(root) / line))
    return [hooks, hooks.parent] if hooks.name == "_" else [hooks]
