"""The session machine: one per project, it tracks whether a model is loaded and ready for delegations.

Nothing here is terminal: a failed session is enabled again, a stopped one returns to idle.
"""

from __future__ import annotations

from states.spec import MachineSpec, TransitionSpec

__all__ = ["SESSION"]

SESSION = MachineSpec(
    kind="session",
    states=("idle", "starting", "loaded", "delegating", "stopping", "failed"),
    initial="idle",
    transitions=(
        TransitionSpec("enable", ("idle", "failed"), "starting"),
        TransitionSpec("ready", ("starting",), "loaded"),
        TransitionSpec("run_started", ("loaded",), "delegating"),
        TransitionSpec("runs_finished", ("delegating",), "loaded"),
        TransitionSpec("disable", ("loaded", "delegating", "starting"), "stopping"),
        TransitionSpec("stopped", ("stopping",), "idle"),
        TransitionSpec("fail", ("starting", "loaded", "delegating", "stopping"), "failed"),
        TransitionSpec("reset", ("failed",), "idle"),
    ),
    descriptions={
        "idle": "no model loaded by this project",
        "starting": "starting the server, pulling and loading the model",
        "loaded": "model loaded, ready to delegate",
        "delegating": "one or more delegation runs in flight",
        "stopping": "unloading the model",
        "failed": "enable or disable failed; the reason says what to do, enable retries",
    },
)
