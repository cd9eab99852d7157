"""Mermaid `stateDiagram-v2` renderer: renders on GitHub and needs no graphviz."""

from __future__ import annotations

from engine.diagrams.model import Diagram

__all__ = ["render_mermaid"]


def _text(value: str) -> str:
    # Mermaid ends a label at ':' or a newline and treats ';' as a statement end.
    return value.replace(":", " -").replace(";", ",").replace("\n", " ")


def render_mermaid(diagram: Diagram) -> str:
    lines = ["---", f"title: {_text(diagram.title or diagram.kind + ' machine')}", "---", "stateDiagram-v2"]
    lines.append("    direction LR")
    for node in diagram.nodes:
        if node.description:
            lines.append(f"    {node.name} : {node.name} - {_text(node.description)}")
    for node in diagram.nodes:
        if node.initial:
            lines.append(f"    [*] --> {node.name}")
    for source, dest, label, _ in diagram.arrows():
        lines.append(f"    {source} --> {dest} : {_text(label)}")
    for node in diagram.nodes:
        if node.terminal:
            lines.append(f"    {node.name} --> [*]")
    if diagram.path:
        lines.append("    %% path: " + ", ".join(f"{s.number}. {s.source} -{s.event}-> {s.dest}" for s in diagram.path))
        visited = sorted(diagram.visited - {diagram.current})
        if visited:
            lines.append("    classDef visited fill:#dbeafe,stroke:#1d4ed8")
            lines.append(f"    class {','.join(visited)} visited")
    if diagram.current:
        lines.append("    classDef current fill:#fde68a,stroke:#b45309,stroke-width:3px")
        lines.append(f"    class {diagram.current} current")
    return "\n".join(lines) + "\n"
