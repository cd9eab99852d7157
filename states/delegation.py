"""The delegation-run machine: one per delegated task, from `pending` to `done`, `failed` or `cancelled`.

The engine writes the returned files while the run is `writing` (previous contents journaled first), so a crash there
can be resumed by re-applying or rolling back. Every way to fail or cancel after work started passes through
`rolling_back`, so no failed or cancelled run leaves its files behind.
"""

from __future__ import annotations

from transitions import EventData

from states.spec import MachineSpec, TransitionSpec

__all__ = ["DELEGATION", "has_attempts_left", "has_verify", "is_cancelling"]


def has_attempts_left(event: EventData) -> bool:
    data = event.model.data
    return int(data.get("attempt", 1)) < int(data.get("max_attempts", 1))


def has_verify(event: EventData) -> bool:
    return bool(event.model.data.get("verify"))


def is_cancelling(event: EventData) -> bool:
    return bool(event.model.data.get("cancel_requested"))


_WORKING = ("delegating", "writing", "verifying", "retrying")

DELEGATION = MachineSpec(
    kind="delegation",
    states=("pending", "delegating", "writing", "verifying", "retrying", "rolling_back", "done", "failed", "cancelled"),
    initial="pending",
    terminal=frozenset({"done", "failed", "cancelled"}),
    transitions=(
        TransitionSpec("start", ("pending",), "delegating"),
        TransitionSpec("generated", ("delegating",), "writing"),
        TransitionSpec("written", ("writing",), "verifying", conditions=(has_verify,)),
        TransitionSpec("written", ("writing",), "done", unless=(has_verify,)),
        TransitionSpec("passed", ("verifying",), "done"),
        TransitionSpec("verify_failed", ("verifying",), "retrying", conditions=(has_attempts_left,)),
        TransitionSpec("verify_failed", ("verifying",), "rolling_back", unless=(has_attempts_left,)),
        TransitionSpec("generation_failed", ("delegating", "writing"), "retrying", conditions=(has_attempts_left,)),
        TransitionSpec("generation_failed", ("delegating", "writing"), "rolling_back", unless=(has_attempts_left,)),
        TransitionSpec("regenerate", ("retrying",), "delegating"),
        TransitionSpec("cancel", ("pending",), "cancelled"),
        TransitionSpec("cancel", _WORKING, "rolling_back"),
        TransitionSpec("abort", ("pending", *_WORKING), "rolling_back"),
        TransitionSpec("rolled_back", ("rolling_back",), "cancelled", conditions=(is_cancelling,)),
        TransitionSpec("rolled_back", ("rolling_back",), "failed", unless=(is_cancelling,)),
    ),
    descriptions={
        "pending": "accepted, waiting for a generation slot and its output files",
        "delegating": "the executor model is generating",
        "writing": "writing the returned files (previous contents journaled)",
        "verifying": "running the verify command",
        "retrying": "verification or generation failed; the next attempt carries the error",
        "rolling_back": "restoring every written file to what it was before the run",
        "done": "files written (and verified, when a verify command was given)",
        "failed": "out of attempts or aborted; files rolled back",
        "cancelled": "cancelled by the caller; files rolled back",
    },
)
