"""Where git runs hooks from for a project: the directory `core.hooksPath` names (husky sets `.husky/_`), asked of
git itself (`git rev-parse --git-path hooks` honours the setting at every level: repository, global, system).

A hooks directory ending in `/_` is husky's: its stubs run `<parent>/<hook>`, so the parent holds code git runs too.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import structlog

__all__ = ["CACHE_S", "GIT_TIMEOUT_S", "hook_directories"]

GIT_TIMEOUT_S = 5.0
CACHE_S = 2.0
"""How long one answer of git serves a root: a run checks every output again at each look and write, and a git
process costs about 10 ms of the event loop each time; core.hooksPath lives in git's config, which no run may write."""
log = structlog.get_logger(__name__)
_answers: dict[Path, tuple[float, list[Path]]] = {}


def _git_env() -> dict[str, str]:
    # GIT_DIR and friends (set when the server itself runs inside a git hook) would point git at another repository.
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | {"GIT_TERMINAL_PROMPT": "0"}


def hook_directories(root: Path) -> list[Path]:
    """The real paths of the directories holding hooks git runs for the repository `root` is in: the hooks
    directory (core.hooksPath, else `.git/hooks`), and its parent when its name is `_`. Empty when `root` is in no
    repository or git is not installed. Asked again once the last answer is CACHE_S old."""
    now = time.monotonic()
    if (cached := _answers.get(root)) is not None and now - cached[0] < CACHE_S:
        return list(cached[1])
    found = _ask_git(root)
    _answers[root] = (now, found)
    return list(found)


def _ask_git(root: Path) -> list[Path]:
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
