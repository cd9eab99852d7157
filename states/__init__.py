"""Declarations of the persisted state machines. No IO: the engine drives and persists them."""

from __future__ import annotations

from states.batch import BATCH, BatchData
from states.data import MachineData, UnknownField
from states.delegation import DELEGATION, Conflict, FileSummary, OutputFile, PromptOverflow, RunData, Turn, Verification
from states.session import SESSION, SESSION_ID, SessionData, SessionWarning
from states.spec import MachineModel, MachineSpec, TransitionSpec, build_machine

__all__ = [
    "BATCH",
    "DELEGATION",
    "MACHINES",
    "SESSION",
    "SESSION_ID",
    "BatchData",
    "Conflict",
    "FileSummary",
    "MachineData",
    "MachineModel",
    "MachineSpec",
    "OutputFile",
    "PromptOverflow",
    "RunData",
    "SessionData",
    "SessionWarning",
    "TransitionSpec",
    "Turn",
    "UnknownField",
    "Verification",
    "build_machine",
]

MACHINES: dict[str, MachineSpec] = {spec.kind: spec for spec in (SESSION, DELEGATION, BATCH)}
