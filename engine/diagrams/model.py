"""The plain diagram model that every renderer draws: no `transitions` objects, only names."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Diagram", "Edge", "Node", "Step"]


@dataclass(frozen=True)
class Node:
    name: str
    description: str = ""
    initial: bool = False
    terminal: bool = False


@dataclass(frozen=True)
class Edge:
    source: str
    dest: str
    trigger: str
    guard: str = ""

    @property
    def label(self) -> str:
        return f"{self.trigger} [{self.guard}]" if self.guard else self.trigger


@dataclass(frozen=True)
class Step:
    """One journaled transition a machine took."""

    number: int
    source: str
    dest: str
    event: str


@dataclass(frozen=True)
class Diagram:
    kind: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    current: str | None = None
    path: tuple[Step, ...] = ()
    title: str = ""

    @property
    def visited(self) -> frozenset[str]:
        return frozenset(s.source for s in self.path) | frozenset(s.dest for s in self.path)

    def arrows(self) -> list[tuple[str, str, str, bool]]:
        """Edges merged per (source, dest): one arrow whose label lists every trigger, each with the steps taken."""
        merged: dict[tuple[str, str], list[str]] = {}
        taken: set[tuple[str, str]] = set()
        for edge in self.edges:
            label = edge.label
            if steps := self.steps_on(edge):
                label += " (step " + ", ".join(str(n) for n in steps) + ")"
                taken.add((edge.source, edge.dest))
            merged.setdefault((edge.source, edge.dest), []).append(label)
        return [(src, dst, " / ".join(labels), (src, dst) in taken) for (src, dst), labels in merged.items()]

    def steps_on(self, edge: Edge) -> list[int]:
        return [s.number for s in self.path if (s.source, s.dest, s.event) == (edge.source, edge.dest, edge.trigger)]
