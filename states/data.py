"""What every persisted machine's data has in common: a frozen dataclass read from, and merged back into, JSON.

The store keeps a machine's data as one JSON object. Each machine declares the shape of that object once, next to its
states, as a dataclass whose fields carry the one default a missing key means. Keys the declaration does not know
(written by a newer or older version of the tool) are ignored when read and kept when written, because the engine
only ever merges the fields it changes into the stored object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Self

__all__ = ["MachineData", "UnknownField"]


class UnknownField(ValueError):
    """A change names a field the machine's data does not declare (a typo in the engine, never user input)."""


@dataclasses.dataclass(frozen=True)
class MachineData:
    """Base of the typed data of a machine; subclasses are frozen dataclasses with a default on every field."""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Self:
        known = cls.field_names()
        return cls(**{k: v for k, v in (raw or {}).items() if k in known})

    @classmethod
    def field_names(cls) -> frozenset[str]:
        # Asked on every persisted move: computed once per class.
        names: frozenset[str] | None = cls.__dict__.get("_field_names")
        if names is None:
            names = frozenset(f.name for f in dataclasses.fields(cls))
            cls._field_names = names  # type: ignore[attr-defined]
        return names

    @classmethod
    def check_changes(cls, changes: Mapping[str, Any]) -> None:
        if changes and (unknown := changes.keys() - cls.field_names()):
            raise UnknownField(f"{cls.__name__} has no field(s) {sorted(unknown)}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
