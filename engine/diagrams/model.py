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

    def steps_on(self, edge: Edge) -> list[int]:
        return [s.number for s in self.path if (s.source, s.dest, s.event) == (edge.source, edge.dest, edge.trigger)]
