"""Graphviz DOT renderer, and SVG through graphviz's `dot` when it is installed."""

from __future__ import annotations

import shutil
import subprocess

from engine.diagrams.model import Diagram

__all__ = ["GraphvizMissing", "render_dot", "render_svg"]


class GraphvizMissing(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "SVG needs graphviz's `dot` program, which is not installed: `apt-get install graphviz`, "
            "or use --format mermaid (no graphviz needed)"
        )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(diagram: Diagram) -> str:
    lines = [
        f"digraph {_quote(diagram.kind)} {{",
        f"    label={_quote(diagram.title or diagram.kind + ' machine')}; labelloc=t; rankdir=LR;",
        '    node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica"];',
        '    edge [fontname="Helvetica", fontsize=10];',
        '    __start [shape=point, width=0.15, label=""];',
    ]
    visited = diagram.visited
    for node in diagram.nodes:
        attrs = [f"tooltip={_quote(node.description)}"]
        if node.terminal:
            attrs.append("peripheries=2")
        if node.name == diagram.current:
            attrs += ["fillcolor=\"#fde68a\"", "penwidth=3"]
        elif node.name in visited:
            attrs.append("fillcolor=\"#dbeafe\"")
        lines.append(f"    {_quote(node.name)} [{', '.join(attrs)}];")
        if node.initial:
            lines.append(f"    __start -> {_quote(node.name)};")
    for source, dest, label, taken in diagram.arrows():
        attrs = [f"label={_quote(label)}"]
        if taken:
            attrs += ["penwidth=2.5", "color=\"#1d4ed8\""]
        lines.append(f"    {_quote(source)} -> {_quote(dest)} [{', '.join(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(diagram: Diagram) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing()
    result = subprocess.run([dot, "-Tsvg"], input=render_dot(diagram), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"graphviz failed: {result.stderr.strip()}")
    return result.stdout
