"""Persisted machines: validate an event with the declared `transitions` machine, then commit the move and its
journal entry in one transaction."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from transitions import MachineError

from engine.errors import UserError
from engine.store.db import MachineRecord, StaleVersion, Store, Transaction
from states import MachineModel, MachineSpec, TransitionSpec, build_machine

__all__ = ["AfterMove", "InvalidEvent", "PersistedMachines", "TerminalState", "new_id"]

AfterMove = Callable[[Transaction, MachineRecord], None]
"""Extra writes that must commit with the transition (e.g. journaled file contents)."""


class InvalidEvent(UserError):
    def __init__(self, kind: str, machine_id: str, state: str, event: str, allowed_from: tuple[str, ...]) -> None:
        if allowed_from:
            hint = f"it is allowed only from: {', '.join(allowed_from)}"
        else:
            hint = f"{kind} machines have no event {event!r}"
        super().__init__(f"{kind} {machine_id} is in state {state!r}; event {event!r} cannot happen now ({hint})")
        self.kind, self.machine_id, self.state, self.event = kind, machine_id, state, event


class TerminalState(InvalidEvent):
    def __init__(self, kind: str, machine_id: str, state: str, event: str) -> None:
        super().__init__(kind, machine_id, state, event, ())
        self.args = (
            f"{kind} {machine_id} has finished in state {state!r}; event {event!r} cannot change a finished run",
        )


def _unguarded_moves(spec: MachineSpec) -> dict[tuple[str, str], str]:
    """(event, source) -> destination for the moves the declaration decides without a guard: exactly one transition
    for that event leaves that source and it has no conditions. The declared machine has no callbacks, so for these
    the `transitions` machine can only answer `dest`; asking it costs add_model/remove_model (~60 % of a fire,
    BENCHMARKS.md B1). Guarded and invalid moves still go through the machine."""
    matches: dict[tuple[str, str], list[TransitionSpec]] = {}
    for t in spec.transitions:
        for source in t.source:
            matches.setdefault((t.trigger, source), []).append(t)
    return {
        key: found[0].dest
        for key, found in matches.items()
        if len(found) == 1 and not found[0].conditions and not found[0].unless
    }


ID_RANDOM_BYTES = 16
"""A run's or a batch's id is a bearer handle: the MCP tasks extension answers `tasks/get` and `tasks/cancel` for
whoever names it (SEP-2663 asks for ids a third party cannot guess), so it carries 128 random bits. Ids made before
(48 bits) are plain strings to every reader and keep working."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(ID_RANDOM_BYTES)}"


class PersistedMachines:
    """All machines of one kind in one store."""

    def __init__(self, store: Store, spec: MachineSpec) -> None:
        self.store = store
        self.spec = spec
        store.declare(spec.kind, spec.states)  # a row in any other state is reported as damaged, never driven
        self._validator = build_machine(spec)
        self._direct = _unguarded_moves(spec)

    def create(self, machine_id: str, data: Mapping[str, Any] | None = None) -> MachineRecord:
        self.spec.data_type.check_changes(data or {})
        with self.store.transaction() as tx:
            return tx.create(machine_id, kind=self.spec.kind, state=self.spec.initial, data=dict(data or {}))

    def ensure(self, machine_id: str, data: Mapping[str, Any] | None = None) -> MachineRecord:
        """The machine with this id, created in the initial state if it does not exist yet."""
        # Machines are never deleted: once it exists a plain read is enough, without taking the write lock
        # (`status` calls this every time; BENCHMARKS.md B2).
        existing = self.store.find(machine_id)
        if existing is not None:
            return existing
        with self.store.transaction() as tx:
            if (existing := tx.find(machine_id)) is not None:
                return existing
            return tx.create(machine_id, kind=self.spec.kind, state=self.spec.initial, data=dict(data or {}))

    def destination(self, record: MachineRecord, event: str, **kwargs: Any) -> str:
        """Where `event` takes `record`, by the declared machine and its guards; raises InvalidEvent if nowhere."""
        if record.state in self.spec.terminal:
            raise TerminalState(self.spec.kind, record.id, record.state, event)
        if event not in self.spec.triggers:
            raise InvalidEvent(self.spec.kind, record.id, record.state, event, ())
        direct = self._direct.get((event, record.state))
        if direct is not None:
            return direct
        model = MachineModel(self.spec.data_type.from_json(record.data))
        self._validator.add_model(model, initial=record.state)
        try:
            moved = model.trigger(event, **kwargs)  # type: ignore[attr-defined]
            return str(model.state) if moved else ""
        except MachineError:
            raise InvalidEvent(
                self.spec.kind, record.id, record.state, event, self.spec.sources_of(event)
            ) from None
        finally:
            self._validator.remove_model(model)

    def fire(
        self,
        machine_id: str,
        event: str,
        *,
        data: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
        expected_version: int | None = None,
        after: AfterMove | None = None,
    ) -> MachineRecord:
        """Apply `event`: merge `data` (fields of the spec's data type) into the machine's data, journal `payload`,
        all in one transaction."""
        self.spec.data_type.check_changes(data or {})
        with self.store.transaction() as tx:
            record = tx.get(machine_id)
            if expected_version is not None and record.version != expected_version:
                raise StaleVersion(machine_id, expected_version, record.version)
            dst = self.destination(record, event, **dict(payload or {}))
            if not dst:
                raise InvalidEvent(
                    self.spec.kind, record.id, record.state, event, self.spec.sources_of(event)
                )
            moved = tx.update(record, event=event, dst=dst, data={**record.data, **(data or {})},
                              payload=dict(payload or {}))
            if after is not None:
                after(tx, moved)
            return moved

    def note(
        self, machine_id: str, event: str, *, data: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None, after: AfterMove | None = None,
    ) -> MachineRecord:
        """Journal an event that changes the data but not the state (e.g. a recovery attempt)."""
        self.spec.data_type.check_changes(data or {})
        with self.store.transaction() as tx:
            record = tx.get(machine_id)
            noted = tx.update(
                record, event=event, dst=record.state, data={**record.data, **(data or {})},
                payload=dict(payload or {}),
            )
            if after is not None:
                after(tx, noted)
            return noted
