"""The tree stays clean for the pinned ruff and mypy (pyproject.toml), so `pytest` alone catches drift; the README's
test command (scripts/bootstrap.sh test) runs both before the suite too. mypy keeps its cache in .mypy_cache: a warm
run takes seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_finds_nothing_in_the_tree() -> None:
    done = _run("ruff", "check", "--no-fix", "--output-format", "concise", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_no_type_error_in_engine_states_and_mcp_adapter() -> None:
    done = _run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout
