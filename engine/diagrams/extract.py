"""Extract a plain `Diagram` from a declared machine, as `transitions` builds it, plus a run's journaled path."""

from __future__ import annotations

from collections.abc import Iterable

from engine.diagrams.model import Diagram, Edge, Node, Step
from engine.store.db import EventRecord
from states import MachineSpec, build_machine

__all__ = ["extract", "path_from_journal"]


def _guard_label(transition: object) -> str:
    parts = []
    for condition in getattr(transition, "conditions", []):
        name = getattr(condition.func, "__name__", str(condition.func))
        parts.append(name if condition.target else f"not {name}")
    return ", ".join(parts)


def extract(spec: MachineSpec, *, current: str | None = None, path: Iterable[Step] = (), title: str = "") -> Diagram:
    machine = build_machine(spec)
    nodes = tuple(
        Node(
            name=name,
            description=spec.descriptions.get(name, ""),
            initial=name == spec.initial,
            terminal=name in spec.terminal,
        )
        for name in machine.states
    )
    edges: list[Edge] = []
    for trigger, event in machine.events.items():
        for source, transitions in event.transitions.items():
            for t in transitions:
                # An internal transition (no dest) stays where it is.
                edge = Edge(source=source, dest=source if t.dest is None else t.dest, trigger=trigger,
                            guard=_guard_label(t))
                if edge not in edges:
                    edges.append(edge)
    if current is not None and current not in machine.states:
        raise ValueError(f"{spec.kind} has no state {current!r}")
    return Diagram(kind=spec.kind, nodes=nodes, edges=tuple(edges), current=current, path=tuple(path), title=title)


def path_from_journal(events: Iterable[EventRecord]) -> list[Step]:
    """The state changes in journal order; notes that leave the state as it was are not steps."""
    steps: list[Step] = []
    for e in events:
        if e.src is not None and e.src != e.dst:
            steps.append(Step(number=len(steps) + 1, source=e.src, dest=e.dst, event=e.event))
    return steps
