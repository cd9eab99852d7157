"""Every code name docs/ARCHITECTURE.md cites is in the code: `module.name` (a module of engine/, states/ or
mcp_adapter/ by its file name, and a name defined at its top level), `Class.attribute` (a method, field or attribute
set in the class), and a bare class-like name (`RunMoves`). A name renamed or removed since (`writes.apply_journal`)
would send a reader looking for code that is not there; tests/test_doc_references.py checks the cited files."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "states", "mcp_adapter")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"(\w+)\.(\w+)(?:\(.*\))?")
CLASS_LIKE = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z]*)+")
FILE_SUFFIXES = {"db", "json", "md", "mmd", "py", "sh", "svg", "toml"}
"""`batch.py`, `state.db`: files, which tests/test_doc_references.py checks."""
EXCLUDED = ("mcp_adapter/resources/",)
"""The eval suite's task files: the scratch projects' own modules, not the product's."""


def _defined(body: list[ast.stmt]) -> set[str]:
    """The names a module or class body defines: functions, classes, assignments, imports."""
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def _class_names(cls: ast.ClassDef) -> set[str]:
    """What a class defines in its body, and the attributes its methods set on `self`."""
    names = _defined(cls.body)
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def _code() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Module name (file stem, or package for __init__.py) -> its top-level names; class name -> its names."""
    modules: dict[str, set[str]] = {}
    classes: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.relative_to(REPO).as_posix().startswith(EXCLUDED):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            stem = path.parent.name if path.stem == "__init__" else path.stem
            modules.setdefault(stem, set()).update(_defined(tree.body))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    classes.setdefault(node.name, set()).update(_class_names(node))
    return modules, classes


def cited_names_missing(text: str) -> list[str]:
    modules, classes = _code()
    everywhere = set(classes).union(*modules.values())
    missing = []
    for span in sorted(set(CODE_SPAN.findall(text))):
        if dotted := DOTTED.fullmatch(span):
            owner, name = dotted.group(1), dotted.group(2)
            if name in FILE_SUFFIXES:
                continue
            if owner in classes and name not in classes[owner]:
                missing.append(f"{span}: {owner} has no {name}")
            elif owner not in classes and owner in modules and name not in modules[owner]:
                missing.append(f"{span}: no {name} at the top of a module named {owner}")
        elif CLASS_LIKE.fullmatch(span) and span not in everywhere:
            missing.append(f"{span}: no such name in {', '.join(PACKAGES)}")
    return missing


def test_every_module_function_and_class_name_the_architecture_document_cites_exists() -> None:
    assert cited_names_missing((REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")) == []


def test_a_name_that_is_not_in_the_code_is_reported() -> None:
    text = ("`writes.apply_journal`, `RunMoves.teleport`, `NoSuchDriver`; still there: `writes.replace_if`, "
            "`RunMoves`, `RunMoves.fire(record, event)`, `writes.py`")
    assert cited_names_missing(text) == [
        "NoSuchDriver: no such name in engine, states, mcp_adapter",
        "RunMoves.teleport: RunMoves has no teleport",
        "writes.apply_journal: no apply_journal at the top of a module named writes",
    ]
