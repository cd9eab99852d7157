"""The batch machine: one mechanical job spread over many delegation runs (its children), and its persisted data
(`BatchData`).

A batch is created together with all its children in one transaction; each child is an ordinary delegation run
whose data names the batch (`RunData.batch_id`). The batch schedules its children (engine/delegation/batch.py) and
ends once every child has ended: `finished` when it ran them all, `stopped` when the failure limit cancelled the rest,
`cancelled` when the caller cancelled it. Finished children stay as they are; unfinished ones are cancelled (and
rolled back) on the way through `stopping`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transitions import EventData

from states.data import MachineData
from states.spec import MachineModel, MachineSpec, TransitionSpec

__all__ = ["BATCH", "BatchData", "is_batch_cancelling"]


@dataclass(frozen=True)
class BatchData(MachineData):
    """A batch's persisted data. The children's ids are `<batch id>.<n>` (n from 1, in `paths` order)."""

    children: list[str] = field(default_factory=list)
    paths: list[list[str]] = field(default_factory=list)
    """Each child's output paths, in the order of `children` (the summary's lines)."""
    max_parallel: int | None = None
    """Children in flight at once; None: the backend's slots (the session's `slots` setting)."""
    max_failures: int | None = None
    """Stop (cancel the children not yet ended) once this many children failed; None: never stop."""
    parallel_verify: bool = False
    """Whether children's verify commands may run at the same time (default: one at a time)."""
    template: str | None = None
    """The glob a template batch expanded, when it was one."""
    started_at: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    """Children by state, recorded when the batch ends (the children's rows are the truth while it runs)."""
    tokens_generated: int = 0
    paused: str | None = None
    """Why the batch waits (the backend does not answer), while it is `paused`."""
    stop_reason: str | None = None
    children_excused: list[str] = field(default_factory=list)
    """Children that failed while the backend did not answer: not counted toward `max_failures`."""
    cancel_requested: bool = False
    recoveries: int = 0


def is_batch_cancelling(event: EventData) -> bool:
    model = event.model
    if not isinstance(model, MachineModel) or not isinstance(model.data, BatchData):
        raise TypeError(f"a batch guard needs a MachineModel holding BatchData, not {model!r}")
    return model.data.cancel_requested


BATCH = MachineSpec(
    kind="batch",
    states=("pending", "running", "paused", "stopping", "finished", "stopped", "cancelled"),
    initial="pending",
    terminal=frozenset({"finished", "stopped", "cancelled"}),
    data_type=BatchData,
    transitions=(
        TransitionSpec("start", ("pending",), "running"),
        TransitionSpec("pause", ("running",), "paused"),
        TransitionSpec("unpause", ("paused",), "running"),
        TransitionSpec("children_ended", ("running",), "finished"),
        TransitionSpec("failure_limit", ("running", "paused"), "stopping"),
        TransitionSpec("cancel", ("pending", "running", "paused"), "stopping"),
        TransitionSpec("children_stopped", ("stopping",), "cancelled", conditions=(is_batch_cancelling,)),
        TransitionSpec("children_stopped", ("stopping",), "stopped", unless=(is_batch_cancelling,)),
    ),
    descriptions={
        "pending": "created with all its children, none started yet",
        "running": "children run in parallel up to the backend's slots",
        "paused": "the backend does not answer; no child starts until it does (or the batch is cancelled)",
        "stopping": "cancelling and rolling back the children that have not ended",
        "finished": "every child ended (done, failed or cancelled: the counts say which)",
        "stopped": "the failure limit was reached; the children not yet ended were cancelled",
        "cancelled": "cancelled by the caller; unfinished children rolled back, finished ones kept",
    },
)
