"""State diagrams: extract a plain model from a declared machine, then render it (Mermaid, DOT, SVG)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from engine.diagrams.dot import GraphvizMissing, render_dot, render_svg
from engine.diagrams.extract import extract, path_from_journal
from engine.diagrams.mermaid import render_mermaid
from engine.diagrams.model import Diagram, Edge, Node, Step
from states import MACHINES

__all__ = [
    "FORMATS",
    "Diagram",
    "Edge",
    "GraphvizMissing",
    "Node",
    "Step",
    "extract",
    "folder_files",
    "path_from_journal",
    "render",
    "render_dot",
    "render_mermaid",
    "render_svg",
    "write_folder",
]

FORMATS: dict[str, Callable[[Diagram], str]] = {"mermaid": render_mermaid, "dot": render_dot, "svg": render_svg}


def render(diagram: Diagram, fmt: str = "mermaid") -> str:
    try:
        renderer = FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown diagram format {fmt!r}; expected one of {', '.join(FORMATS)}") from None
    return renderer(diagram)


def _readme(kinds: Iterable[str], rendered: dict[str, str]) -> str:
    parts = [
        "# State diagrams",
        "",
        "Generated from `states/` by `python -m engine.diagrams diagrams/`; a test fails when they drift.",
        "A run's own diagram, with its current state and journaled path: `local-llm diagram delegation --run ID`.",
        "",
    ]
    for kind in kinds:
        parts += [f"## {kind}", "", f"Source: [`{kind}.mmd`]({kind}.mmd)", "",
                  "```mermaid", rendered[kind].rstrip(), "```", ""]
    return "\n".join(parts)


def folder_files(*, with_svg: bool) -> dict[str, str]:
    """The contents of `diagrams/`: file name -> text."""
    files: dict[str, str] = {}
    for kind, spec in MACHINES.items():
        diagram = extract(spec)
        files[f"{kind}.mmd"] = render_mermaid(diagram)
        if with_svg:
            files[f"{kind}.svg"] = render_svg(diagram)
    files["README.md"] = _readme(MACHINES, {k: files[f"{k}.mmd"] for k in MACHINES})
    return files


def write_folder(folder: Path) -> list[Path]:
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in folder_files(with_svg=shutil.which("dot") is not None).items():
        (folder / name).write_text(text)
        written.append(folder / name)
    return written
