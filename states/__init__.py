"""Declarations of the persisted state machines. No IO: the engine drives and persists them."""

from __future__ import annotations

from states.delegation import DELEGATION
from states.session import SESSION
from states.spec import MachineModel, MachineSpec, TransitionSpec, build_machine

__all__ = ["DELEGATION", "MACHINES", "SESSION", "MachineModel", "MachineSpec", "TransitionSpec", "build_machine"]

MACHINES: dict[str, MachineSpec] = {spec.kind: spec for spec in (SESSION, DELEGATION)}
