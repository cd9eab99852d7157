"""What an attempt changed in a file, compactly: lines added and removed, the functions, classes or sections touched,
and a unified diff. Pure; for the run's result (the orchestrator reads a summary instead of whole files)."""

from __future__ import annotations

import ast
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass

from engine.executor.edits.text import FileText

__all__ = ["FileChange", "changed_regions", "summarize_change", "unified_diff"]

TOP = "(top level)"
"""The region of a changed line that no function, class or heading encloses."""

_HEADING = re.compile(
    r"^\s*(?:"
    r"(?:export\s+)?(?:default\s+)?(?:pub(?:\([\w:]+\))?\s+)?(?:async\s+)?(?:static\s+)?"
    r"(?:def|class|function|fn|func|sub|interface|struct|enum|impl|trait|module|namespace|object)\b\s*[\w.$:<>]*"
    r"|#{1,6}\s+\S.*"
    r"|\[[^\]\n]+\]\s*$"
    r"|(?:public|private|protected|internal)\b[^=;]*\("
    r")"
)


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int
    removed: int
    regions: tuple[str, ...]
    """Where the changes are: `Cart.add`, `total` (Python, by the syntax tree), else the nearest heading-like line
    above each change (`function load(`, `## Usage`, `[tool.ruff]`), or TOP."""
    created: bool = False


def _lines(text: str | bytes | None) -> list[str]:
    if text is None:
        return []
    data = text if isinstance(text, str) else text.decode("utf-8", errors="replace")
    return list(FileText.from_text(data).lines)


def _python_scopes(source: str) -> list[tuple[int, int, str]] | None:
    """(first line, last line, dotted name) of every def and class, 1-based; None when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    scopes: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                scopes.append((first, child.end_lineno or child.lineno, name))
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return scopes


def _labeller(lines: list[str], path: str) -> Callable[[int], str]:
    scopes = _python_scopes("\n".join(lines) + "\n") if path.endswith((".py", ".pyi")) else None
    if scopes is not None:
        def python(n: int) -> str:
            inside = [s for s in scopes if s[0] <= n + 1 <= s[1]]
            return max(inside, key=lambda s: s[0])[2] if inside else TOP
        return python

    def heading(n: int) -> str:
        for k in range(min(n, len(lines) - 1), -1, -1):
            if _HEADING.match(lines[k]):
                text = lines[k].strip()
                return text if len(text) <= 60 else text[:57] + "..."
        return TOP
    return heading


def changed_regions(before: str | bytes | None, after: str | bytes, *, path: str) -> tuple[str, ...]:
    """The regions (see FileChange.regions) holding the changed lines, in file order, each once."""
    return summarize_change(before, after, path=path).regions


def summarize_change(before: str | bytes | None, after: str | bytes, *, path: str) -> FileChange:
    """Lines added and removed (a changed line counts once each way) and where, between two versions of a file
    (`before` None: the file is new)."""
    old, new = _lines(before), _lines(after)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    old_label, new_label = _labeller(old, path), _labeller(new, path)
    added = removed = 0
    regions: list[str] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        added += j2 - j1
        removed += i2 - i1
        lines, label, span = (new, new_label, range(j1, j2)) if j2 > j1 else (old, old_label, range(i1, i2))
        worded = [n for n in span if lines[n].strip()] or list(span)  # blank lines go with their neighbours
        regions += [label(n) for n in worded]
    return FileChange(path, added, removed, tuple(dict.fromkeys(regions)), created=before is None)


def _diff_lines(text: str | bytes | None) -> list[str]:
    if text is None:
        return []
    data = text if isinstance(text, str) else text.decode("utf-8", errors="replace")
    parsed = FileText.from_text(data)
    lines = [line + "\n" for line in parsed.lines]
    if lines and not parsed.final_newline:
        lines[-1] += "\\ No newline at end of file\n"
    return lines


def unified_diff(before: str | bytes | None, after: str | bytes | None, *, path: str, context: int = 3) -> str:
    """A unified diff (`a/path` -> `b/path`, `/dev/null` for a missing side), line endings left out."""
    return "".join(difflib.unified_diff(
        _diff_lines(before), _diff_lines(after), fromfile="/dev/null" if before is None else f"a/{path}",
        tofile="/dev/null" if after is None else f"b/{path}", n=context))
