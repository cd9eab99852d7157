"""The delegation-run machine: one per delegated task, from `pending` to `done`, `failed` or `cancelled`, and the
run's persisted data (`RunData`).

The engine writes the returned files while the run is `writing` (previous contents journaled first), so a crash there
can be resumed by re-applying or rolling back. Every way to fail or cancel after work started passes through
`rolling_back`, so no failed or cancelled run leaves its files behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from transitions import EventData

from states.data import MachineData
from states.spec import MachineModel, MachineSpec, TransitionSpec

__all__ = [
    "DELEGATION",
    "Conflict",
    "FileSummary",
    "OutputFile",
    "PromptOverflow",
    "PromptText",
    "RunData",
    "SkippedFile",
    "Turn",
    "Verification",
    "has_attempts_left",
    "has_verify",
    "is_cancelling",
]


class OutputFile(TypedDict):
    path: str
    description: str


class Turn(TypedDict):
    """A failed attempt, replayed to the model on the next one: its answer and what was wrong with it."""

    answer: str
    kind: str
    """`answer` (the answer could not be used) or `verify` (the verify command failed)."""
    detail: str


class PromptText(TypedDict):
    system: str
    user: str
    examples: NotRequired[list[str]]
    """Shown exchanges sent between `system` and `user`: user and assistant texts in turn (the `whole` form's,
    engine.executor.prompting.WHOLE_EXAMPLES); absent in runs packed before they existed, which send none."""


class SkippedFile(TypedDict):
    path: str
    reason: str
    tokens: int
    kept_tokens: int


class Conflict(TypedDict):
    """An output the run left alone because someone else changed it (the shared-tree rule)."""

    path: str
    found: str
    """`changed`, `deleted` or `created`: what the run found instead of a version it started from or wrote;
    `not_a_file` (a directory, FIFO, socket or device is there now) or `redirected` (a symlink now leads the path out
    of the project or to a protected path)."""
    during: str
    """`writing` or `rolling_back`."""
    kept_at: str | None
    """Where the run's version is kept (`.claude/workflow/conflicts/<run_id>/<path>`), if it had one."""


class FileSummary(TypedDict):
    """What a finished run's result says of one output once the retention policy dropped its contents."""

    bytes: int
    added: int
    removed: int
    changed: list[str]


class Verification(TypedDict):
    passed: bool | None
    exit_code: int | None
    output_tail: str
    timed_out: bool
    seconds: float


class PromptOverflow(TypedDict):
    """Why a prompt was not sent, or was refused: the numbers the caller needs to shrink it."""

    prompt_tokens: int | None
    exact: bool
    """Counted with the model's tokenizer; else a conservative estimate."""
    num_ctx: int
    answer_room: int
    """Tokens the run keeps free for the answer (and the thinking, when asked for)."""
    refused_by: str
    """`server`, `tokenizer` (an exact count before sending) or `estimate` (before sending, where the server would
    have cut the prompt silently)."""


@dataclass(frozen=True)
class RunData(MachineData):
    """A run's persisted data. `attempt` is 0 until the run starts, then the attempt in progress (1-based)."""

    task: str = ""
    task_type: str = "generate"
    context_files: list[str] = field(default_factory=list)
    output_files: list[OutputFile] = field(default_factory=list)
    verify: str = ""
    verify_timeout: float = 300.0
    max_attempts: int = 3
    attempt: int = 0
    model: str | None = None
    """The model asked for by the caller; None means the session's."""
    answer_form: str = "json"
    """`edits` (search/replace blocks; whole content for new files), `whole` (every file complete in a fenced block),
    `json` (every file whole in a JSON object), or `auto` until the run packs its prompt and records the form it
    chose (and `answer_form_rule`, why). Rows from before the field were JSON runs,
    whose packed prompts ask for JSON, so that is the default (no migration)."""
    answer_form_rule: str | None = None
    """The rule that chose the form of an `auto` run (engine.executor.forms), in words."""
    backend: str | None = None
    """The backend that packed the prompt (the answer-form rule counts edit answers per backend and model)."""
    think: bool | str = False
    """Whether a model that can think may (a level: how much); mechanical work says no. Rows from before the field
    read False, so it needs no migration."""
    allow_secrets: bool = False
    allow_config_writes: bool = False
    """The caller's opt-in to write configuration that runs code (engine.delegation.paths.CONFIG_RULES). A field
    with a default: rows written before it existed read False, so it needs no migration."""
    score: float | None = None
    started_at: float | None = None
    prompt: PromptText | None = None
    """The packed first messages, kept so every attempt (and a resumed run) sends them byte for byte."""
    num_ctx: int | None = None
    answer_floor: int | None = None
    """The least room the answer gets (packing.answer_floor), fixed when the prompt is packed; None in runs packed
    before it existed, which kept a quarter of num_ctx."""
    files_skipped: list[SkippedFile] = field(default_factory=list)
    history: list[Turn] = field(default_factory=list)
    last_answer: str = ""
    last_error: str | None = None
    backend_retries: int = 0
    """Generations sent again because the server or the way to it failed (engine/delegation/steps.py): none of them
    used an attempt. Rows from before the field read 0, so it needs no migration."""
    infrastructure_failure: bool = False
    """The last failed attempt failed on the server or the way to it, past the sends again: a batch does not count
    such a child toward max_failures. Rows from before the field read False."""
    tokens_generated: int = 0
    thinking_tokens: int = 0
    """Of tokens_generated, those spent thinking."""
    prompt_tokens: int = 0
    prompt_overflow: PromptOverflow | None = None
    model_used: str | None = None
    files_written: list[str] = field(default_factory=list)
    verification: Verification | None = None
    error: str | None = None
    conflicts: list[Conflict] = field(default_factory=list)
    cancel_requested: bool = False
    recoveries: int = 0
    batch_id: str | None = None
    """The batch this run is a child of (states/batch.py); None for a run delegated on its own. A child is driven
    by its batch, and recovered through it."""
    verify_alone: bool = False
    """A batch child whose verify command waits until no other child of its batch verifies."""

    @property
    def output_paths(self) -> list[str]:
        return [o["path"] for o in self.output_files]

    @property
    def model_name(self) -> str | None:
        """The model that answered, else the one asked for."""
        return self.model_used or self.model

    def without_bodies(self) -> dict[str, object]:
        """The changes that drop what a finished run no longer needs (engine/delegation/retention.py): the packed
        prompt and the model's answers. What `run`, `result`, `stats` and the log show stays: the task, the counts,
        the verification, each failed attempt's kind and detail, errors and conflicts."""
        turns: list[Turn] = [{"answer": "", "kind": t["kind"], "detail": t["detail"]} for t in self.history]
        return {"prompt": None, "last_answer": "", "history": turns}

    def incomplete(self) -> str | None:
        """Why this data cannot be driven (a run created by something other than `delegate`), or None."""
        if not self.task or not self.output_files or not all(
            isinstance(o, dict) and isinstance(o.get("path"), str) for o in self.output_files
        ):
            return "the run's data has no task or output_files to work from; delegate it again"
        return None


def _data(event: EventData) -> RunData:
    model = event.model
    if not isinstance(model, MachineModel) or not isinstance(model.data, RunData):
        raise TypeError(f"a delegation guard needs a MachineModel holding RunData, not {model!r}")
    return model.data


def has_attempts_left(event: EventData) -> bool:
    data = _data(event)
    return max(data.attempt, 1) < data.max_attempts


def has_verify(event: EventData) -> bool:
    return bool(_data(event).verify)


def is_cancelling(event: EventData) -> bool:
    return _data(event).cancel_requested


_WORKING = ("delegating", "writing", "verifying", "retrying")

DELEGATION = MachineSpec(
    kind="delegation",
    states=("pending", "delegating", "writing", "verifying", "retrying", "rolling_back", "done", "failed", "cancelled"),
    initial="pending",
    terminal=frozenset({"done", "failed", "cancelled"}),
    data_type=RunData,
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
        TransitionSpec("conflict", ("writing",), "rolling_back"),
        TransitionSpec("cancel", ("pending",), "cancelled"),
        TransitionSpec("cancel", _WORKING, "rolling_back"),
        TransitionSpec("abort", ("pending", *_WORKING), "rolling_back"),
        TransitionSpec("rolled_back", ("rolling_back",), "cancelled", conditions=(is_cancelling,)),
        TransitionSpec("rolled_back", ("rolling_back",), "failed", unless=(is_cancelling,)),
        TransitionSpec("rollback_failed", ("rolling_back",), "failed"),
    ),
    descriptions={
        "pending": "accepted, waiting for a generation slot and its output files",
        "delegating": "the executor model is generating",
        "writing": "writing the returned files (previous contents journaled)",
        "verifying": "running the verify command",
        "retrying": "verification or generation failed; the next attempt carries the error",
        "rolling_back": "restoring every written file to what it was before the run",
        "done": "files written (and verified, when a verify command was given)",
        "failed": "out of attempts, aborted, or in conflict with someone else's edit; the run's files rolled back",
        "cancelled": "cancelled by the caller; files rolled back",
    },
)
