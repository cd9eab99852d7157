"""What a session is enabled with, and what it keeps: the `slots` setting checked, the data an enable starts from,
the data an idle session keeps, and the choice an idle session is enabled with again for the runs that need it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidArgument
from states import SessionData

__all__ = ["ResumeChoice", "check_slots", "cleared", "resume_choice", "unprepared"]

_SLOTS_EXPECTED = (
    "an integer >= 1: how many generations the engine runs at once on the backend (leave it out to use what the "
    "server says, else 1)"
)


def check_slots(slots: object, *, backend: str | None = None) -> int | None:
    """The `slots` option of enable, or a clear error naming it. The embedded model runs one generation at a time."""
    if slots is None:
        return None
    if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
        raise InvalidArgument("slots", _SLOTS_EXPECTED, slots)
    if backend == "embedded" and slots > 1:
        raise InvalidArgument(
            "slots", "1 for the embedded backend (its model runs one generation at a time in this process); leave "
            "--slots out, or use --backend ollama or openai for generations in parallel", slots)
    return slots


def unprepared() -> dict[str, Any]:
    """What enable clears before preparing: everything `prepare` (engine/session/prepare.py) fills in again."""
    return {"num_ctx": None, "num_ctx_from": None, "base_url": None, "slots": None, "slots_from": None,
            "server_kind": None, "server_slots": None, "slot_context": None, "warnings": [], "parameters": None}


def cleared(data: SessionData) -> dict[str, Any]:
    """Session data after it returns to idle: nothing loaded; the last model (and a slots setting) kept for the runs
    that enable it again."""
    return {**unprepared(), "backend": None, "model": None, "persist": False, "owner": None, "busy_by": None,
            "reason": None, "context_length": None, "keep_alive": None, "size_bytes": None, "capabilities": None,
            "last_model": data.model, "last_backend": data.backend,
            "last_slots": data.slots if data.slots_from == "setting" else None}


@dataclass(frozen=True)
class ResumeChoice:
    llm: str | bool
    backend: str | None = None
    slots: int | None = None


def resume_choice(data: SessionData) -> ResumeChoice:
    """What an idle session is enabled with for a delegation: the model (and slots setting) it had last, so runs
    resumed after a server died keep the model they started with, whatever the VRAM would recommend now; else the
    defaults."""
    if data.last_model and data.last_backend in ("ollama", "openai"):
        return ResumeChoice(data.last_model, data.last_backend, data.last_slots)
    return ResumeChoice(True)
