"""The package and the benchmarks stand on their own: bench/ never imports the test suite, and engine/ (its test
doubles in engine/testing/ included) never imports the test suite or pytest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

__all__: list[str] = []

REPO = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def _offenders(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(REPO)}: {module}"
        for path in sorted((REPO / folder).rglob("*.py"))
        for module in sorted(_imported_modules(path))
        if module.split(".")[0] in forbidden
    ]


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("bench", ("tests",)),
    ("engine", ("tests", "pytest", "_pytest")),
])
def test_the_package_and_the_benchmarks_never_import_the_test_suite(folder: str, forbidden: tuple[str, ...]) -> None:
    assert _offenders(folder, forbidden) == []
