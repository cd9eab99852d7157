"""Shared fixtures. Tests that need a real component (the embedded llama.cpp model, graphviz) are marked; when
CI=true (or LOCAL_LLM_REQUIRE_REAL=1) a skip of such a test is turned into a failure, so CI cannot pass by skipping.
A test marked `embedded` (tests.markers.needs_embedded) is skipped here when the model is missing. Every test runs in
the product's default answer form unless it is marked `answer_form_json`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import Engine, Project
from engine.executor.answers import ANSWER_FORM_ENV
from engine.testing.ollama_double import FakeModel, OllamaDouble
from tests.markers import embedded_missing

pytest_plugins = ["pytester"]  # tests/test_markers.py runs the hooks below on a generated test file

REAL_MARKERS = ("embedded", "graphviz", "claude_cli")
REQUIRE_REAL = os.environ.get("CI", "").lower() == "true" or os.environ.get("LOCAL_LLM_REQUIRE_REAL") == "1"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # The only skip for a missing embedded model: tied to the marker, so the hook below sees every such skip.
    # tryfirst: before the test's fixtures start anything that needs the model.
    if item.get_closest_marker("embedded") is not None and (reason := embedded_missing()):
        pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_REAL and report.skipped and any(item.get_closest_marker(m) for m in REAL_MARKERS):
        report.outcome = "failed"
        report.longrepr = f"{item.nodeid}: a real-component test was skipped under CI=true: {report.longrepr}"


@pytest.fixture(autouse=True)
def answer_form_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see the product's default answer form (edit blocks; JSON for the embedded backend), as users do. A test
    marked `answer_form_json` runs its sessions in the JSON form, because it scripts whole-file JSON answers
    (engine.testing.scripted.files_answer, the Ollama double's schema example); $LOCAL_LLM_ANSWER_FORM of the shell
    running pytest never leaks in."""
    if request.node.get_closest_marker("answer_form_json") is None:
        monkeypatch.delenv(ANSWER_FORM_ENV, raising=False)
    else:
        monkeypatch.setenv(ANSWER_FORM_ENV, "json")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ollama_double(monkeypatch: pytest.MonkeyPatch) -> Iterator[OllamaDouble]:
    """A started double with one pulled model (`deepseek-coder:6.7b`) and a registry to pull others from;
    OLLAMA_HOST points at it for the test."""
    double = OllamaDouble(
        models=[FakeModel("deepseek-coder:6.7b", context_length=16384)],
        registry=[
            FakeModel("deepseek-coder:6.7b", context_length=16384),
            FakeModel("deepseek-coder-v2:16b", context_length=163840, family="deepseek2", parameter_size="15.7B",
                      size=8_900_000_000),
            FakeModel("deepseek-coder:33b", context_length=16384, parameter_size="33B", size=18_800_000_000),
            FakeModel("deepseek-r1:32b", context_length=131072, family="qwen2", parameter_size="32.8B",
                      size=19_900_000_000),
        ],
    )
    with double:
        monkeypatch.setenv("OLLAMA_HOST", double.host)
        yield double


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def engine(project_dir: Path) -> Iterator[Engine]:
    eng = Engine(Project.resolve(project_dir))
    try:
        yield eng
    finally:
        eng.close()


@pytest.fixture
def cli_env(project_dir: Path) -> dict[str, str]:
    """Environment for running `local-llm` as a real subprocess against `project_dir`."""
    env = dict(os.environ)
    env["LOCAL_LLM_PROJECT"] = str(project_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def cli_command() -> list[str]:
    return [sys.executable, "-m", "mcp_adapter"]
