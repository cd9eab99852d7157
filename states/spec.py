"""The shape every machine declaration takes, and the one way to build a `transitions` machine from it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transitions import EventData, Machine

from states.data import MachineData

__all__ = ["Guard", "MachineModel", "MachineSpec", "TransitionSpec", "build_machine"]

Guard = Callable[[EventData], bool]
"""A guard sees the event (its kwargs and the model's `data`) and says whether the transition may happen."""


@dataclass(frozen=True)
class TransitionSpec:
    trigger: str
    source: tuple[str, ...]
    dest: str
    conditions: tuple[Guard, ...] = ()
    unless: tuple[Guard, ...] = ()

    def as_transitions_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "source": list(self.source),
            "dest": self.dest,
            "conditions": list(self.conditions),
            "unless": list(self.unless),
        }


@dataclass(frozen=True)
class MachineSpec:
    """A declared machine: states, the initial one, the terminal ones and the transitions between them."""

    kind: str
    states: tuple[str, ...]
    initial: str
    transitions: tuple[TransitionSpec, ...]
    terminal: frozenset[str] = frozenset()
    descriptions: Mapping[str, str] = field(default_factory=dict)
    data_type: type[MachineData] = MachineData
    """The typed shape of the machine's persisted data; guards see it as `event.model.data`."""

    def __post_init__(self) -> None:
        known = set(self.states)
        if self.initial not in known:
            raise ValueError(f"{self.kind}: initial state {self.initial!r} is not declared")
        for t in self.transitions:
            for state in (*t.source, t.dest):
                if state not in known:
                    raise ValueError(f"{self.kind}: transition {t.trigger!r} names undeclared state {state!r}")
            # '*' or a terminal source would let a finished machine move again.
            if leaking := set(t.source) & self.terminal:
                raise ValueError(f"{self.kind}: transition {t.trigger!r} leaves terminal state(s) {sorted(leaking)}")

    @property
    def triggers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.trigger for t in self.transitions))

    def sources_of(self, trigger: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for t in self.transitions if t.trigger == trigger for s in t.source))


class MachineModel:
    """The object a `transitions` machine drives: the current state plus the machine's typed data for guards."""

    def __init__(self, data: MachineData) -> None:
        self.data = data
        self.state: str  # set by transitions (model_attribute="state")


def build_machine(spec: MachineSpec, *, model: MachineModel | None = None, state: str | None = None) -> Machine:
    """A plain synchronous machine that validates events; it performs no IO and runs no callbacks.

    A persisted machine is restored with `add_model(..., initial=stored_state)`, which runs no on_enter callbacks.
    """
    machine = Machine(
        model=None,
        states=list(spec.states),
        transitions=[t.as_transitions_dict() for t in spec.transitions],
        initial=spec.initial,
        auto_transitions=False,
        send_event=True,
        model_attribute="state",
        ignore_invalid_triggers=False,
    )
    if model is not None:
        machine.add_model(model, initial=state or spec.initial)
    return machine
