"""The architecture holds: arrows one way (mcp_adapter -> engine -> states), no import circle anywhere (imports inside
functions counted too), nothing inside engine/ imports the facade, the package and the benchmarks never import the
test suite, every engine/ file stays about 400 lines or less, and persisted data is read through its typed
declaration, never with `data.get(`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "states", "mcp_adapter")
MAX_LINES = 430
"""About 400: the issue's bound, with room for a docstring line or two."""


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """Every project module that `path` imports, at any depth of its code (functions, TYPE_CHECKING blocks)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod when there is one, else a name of pkg.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: set(_imports(path, name, known)) for name, path in known.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back_through_a_circle() -> None:
    assert _cycles(_graph()) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_imports_point_one_way_mcp_adapter_to_engine_to_states() -> None:
    wrong = []
    for module, targets in _graph().items():
        layer = module.split(".")[0]
        for target in targets:
            top = target.split(".")[0]
            if (layer == "states" and top != "states") or (layer == "engine" and top == "mcp_adapter"):
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_nothing_inside_the_engine_imports_the_facade() -> None:
    importers = sorted(m for m, targets in _graph().items() if "engine.api" in targets and m.startswith("engine."))
    assert importers == []


def test_the_adapters_use_only_the_engines_public_names() -> None:
    allowed = {"engine", "engine.logs", "engine.progress"}
    reaching = sorted(f"{m} -> {t}" for m, targets in _graph().items() if m.startswith("mcp_adapter")
                      for t in targets if t.startswith("engine") and t not in allowed)
    assert reaching == []


def test_no_engine_file_is_more_than_about_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in (REPO / "engine").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_persisted_data_is_read_through_its_declaration() -> None:
    untyped = [f"{p.relative_to(REPO)}:{i}" for package in ("engine", "states") for p in (REPO / package).rglob("*.py")
               for i, line in enumerate(p.read_text().splitlines(), 1) if "data.get(" in line]
    assert untyped == []


def _top_level_imports(path: Path) -> set[str]:
    tops: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


@pytest.mark.parametrize(("folder", "forbidden"), [("bench", {"tests"}), ("engine", {"tests", "pytest", "_pytest"})])
def test_the_package_and_the_benchmarks_never_import_the_test_suite(folder: str, forbidden: set[str]) -> None:
    offenders = sorted(f"{p.relative_to(REPO)}: {sorted(found)}" for p in (REPO / folder).rglob("*.py")
                       if (found := _top_level_imports(p) & forbidden))
    assert offenders == []


RUN_OWNER = "engine/delegation/moves.py"
"""The one module that fires delegation-run events (creation, moves, notes); every other module asks it."""
MACHINE_CALLS = {"fire", "note", "create", "ensure"}


def _run_event_calls(source: str, name: str) -> list[str]:
    """Where `source` fires a run event itself: a call of fire/note/create/ensure on the runs' PersistedMachines
    (`ctx.runs`, or a variable or parameter named `runs`), or a row created with `kind=DELEGATION.kind`."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        receiver = node.func.value
        on_runs = (isinstance(receiver, ast.Attribute) and receiver.attr == "runs") or (
            isinstance(receiver, ast.Name) and receiver.id == "runs")
        run_row = any(k.arg == "kind" and ast.unparse(k.value) == "DELEGATION.kind" for k in node.keywords)
        if (on_runs and node.func.attr in MACHINE_CALLS) or (node.func.attr == "create" and run_row):
            found.append(f"{name}:{node.lineno}: {ast.unparse(node.func)}")
    return found


def test_only_the_run_owner_fires_delegation_run_events() -> None:
    offenders = [hit for package in ("engine", "mcp_adapter") for p in sorted((REPO / package).rglob("*.py"))
                 if str(p.relative_to(REPO)) != RUN_OWNER
                 for hit in _run_event_calls(p.read_text(), str(p.relative_to(REPO)))]
    assert offenders == []


def test_the_run_event_finder_finds_each_way_of_firing_one() -> None:
    source = (
        "self.ctx.runs.fire(run_id, 'cancel')\n"
        "tools.ctx.runs.note(run_id, 'packed')\n"
        "runs.fire(record.id, 'abort')\n"
        "tx.create(run_id, kind=DELEGATION.kind, state='pending', data={})\n"
        "self.ctx.batches.fire(batch_id, 'start')\n"
        "self.moves.fire(record, 'start')\n"
        "runs.store.scan(kind='delegation')\n"
    )
    assert [hit.split(": ", 1)[1] for hit in _run_event_calls(source, "x.py")] == [
        "self.ctx.runs.fire", "tools.ctx.runs.note", "runs.fire", "tx.create"]
