"""One step per non-terminal state of a run, each ending in one journaled transition (`STEPS`, checked against the
machine by a test):

    pending      `start`
    delegating   pack the context (once, kept in the run's data), generate, parse; `generated` journals the writes
    writing      apply the journaled contents atomically, `written`
    verifying    run the verify command, `passed` or `verify_failed` (with the output for the next prompt)
    retrying     `regenerate` with attempt + 1
    rolling_back restore the journaled originals, `rolled_back`

Because every step starts from what the store says, resuming after a crash is the same loop: a run interrupted while
`delegating` generates again, `writing` re-applies (idempotent), `verifying` verifies again, `rolling_back` finishes.

Test-only hook: with LOCAL_LLM_TEST_PAUSE_IN=<state> and LOCAL_LLM_TEST_PAUSE_FILE=<path>, a run waits until the file
exists when it reaches that state (in `writing` and `rolling_back`: after the first file), so tests can SIGKILL the
process at a known point. Never set them outside tests.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import structlog

from engine.context import EngineContext
from engine.delegation.answer_forms import run_form
from engine.delegation.generation import REPEATING, Slots, fit_history, generate, safe_progress
from engine.delegation.moves import RunMoves, mark_writes
from engine.delegation.packing import counter, fit_answer, overflow_record, pack, prompt_messages
from engine.delegation.reading import as_text, read_answer_off_loop
from engine.delegation.shared_tree import (
    Action,
    apply_action,
    apply_file,
    conflict_message,
    conflict_step,
    look,
    read_bases,
    rollback_file,
)
from engine.delegation.shared_tree import Step as ShareStep
from engine.delegation.verify import run_verify
from engine.executor import Executor
from engine.executor.answers import AnswerError, answer_schema
from engine.executor.backends.base import BackendError, GenerateRequest, GenerateResult, PromptTooLong
from engine.progress import Progress
from engine.store.db import MachineRecord, Transaction
from states import RunData, Turn

__all__ = ["INFRASTRUCTURE_RETRIES", "STEPS", "Attempt", "SessionLink", "Step", "StepTools", "route_key", "test_pause"]

log = structlog.get_logger(__name__)

TEMPERATURE = 0.1
"""The engine's sampling, part of what `local-llm eval` measures: near-greedy (mechanical work has one right answer,
and a small model wanders at higher temperatures), not exactly 0, so a retry with a new seed (`seed` = the attempt
number: 1, 2, 3) can come out differently where the retry's feedback alone would not move the model; the same
attempt of the same run samples the same way again (a resumed run, a rerun eval) where the backend honours seeds."""

PAUSE_ENV, PAUSE_FILE_ENV = "LOCAL_LLM_TEST_PAUSE_IN", "LOCAL_LLM_TEST_PAUSE_FILE"
INFRASTRUCTURE_RETRIES = 30
"""Sends of one attempt's generation after the server or the way to it failed; none uses an attempt. With the
backoff below that is about two minutes: behind a gateway whose other backends are all busy (LiteLLM answers 429
"No deployments available" while a dead one cools down), a slot frees when a generation ends."""
RETRY_BACKOFF_S = 0.5
RETRY_BACKOFF_MAX_S = 5.0


class SessionLink(Protocol):
    """What runs need of the session (engine.session.lifecycle.Session): its executor, and to say a run started."""

    async def executor(self, *, progress: Progress) -> Executor: ...

    def run_started(self) -> None: ...

    def runs_finished(self) -> None: ...


@dataclass(frozen=True)
class StepTools:
    """What every step of every run of one engine uses."""

    ctx: EngineContext
    moves: RunMoves
    session: SessionLink
    slots: Slots

    @property
    def root(self) -> Path:
        return self.ctx.project.root


@dataclass
class Attempt:
    """One drive of one run in this process."""

    progress: Progress
    executor: Executor | None = None


Step = Callable[[StepTools, MachineRecord, Attempt], Awaitable[None]]


async def test_pause(state: str) -> None:
    """Test-only (see the module docstring): wait here until the pause file exists."""
    if os.environ.get(PAUSE_ENV) != state or not os.environ.get(PAUSE_FILE_ENV):
        return
    release = Path(os.environ[PAUSE_FILE_ENV])
    log.warning("test pause", state=state, release=str(release))
    while not release.exists():
        await anyio.sleep(0.02)  # another process (the test) creates the file: nothing in-process to wait on


async def _pending(tools: StepTools, record: MachineRecord, attempt: Attempt) -> None:
    tools.moves.fire(record, "start", data={"attempt": 1, "started_at": time.time()}, payload={"attempt": 1})


async def _retrying(tools: StepTools, record: MachineRecord, attempt: Attempt) -> None:
    number = RunData.from_json(record.data).attempt + 1
    tools.moves.fire(record, "regenerate", data={"attempt": number}, payload={"attempt": number})


async def _executor(tools: StepTools, attempt: Attempt) -> Executor:
    if attempt.executor is None:
        attempt.executor = await tools.session.executor(progress=attempt.progress)
        tools.session.run_started()
    return attempt.executor


async def _delegating(tools: StepTools, record: MachineRecord, attempt: Attempt) -> None:
    executor = await _executor(tools, attempt)
    num_ctx = int(executor.num_ctx)
    data = RunData.from_json(record.data)
    model = data.model or executor.model
    try:
        if data.prompt is None:
            record, data = await _pack(tools, record, data, executor, model=model)
        result = await _generate_through_faults(tools, record, attempt, executor, data, model=model)
    except PromptTooLong as exc:
        overflow = overflow_record(exc, answer_room=_floor(data, num_ctx))
        tools.moves.note(record.id, "prompt_too_long", data={"prompt_overflow": overflow}, payload=dict(overflow))
        raise
    except BackendError as exc:
        if not exc.retryable:
            raise
        # Past the bound of sends again, an infrastructure fault still ends the attempt, marked so that a batch
        # never counts the child's failure toward max_failures (engine/delegation/batch.py).
        _generation_failed(tools, record, None, f"backend error: {exc}",
                           extra={"infrastructure_failure": True} if exc.infrastructure else None)
        return
    counters = {
        "tokens_generated": data.tokens_generated + int(result.completion_tokens),
        "thinking_tokens": data.thinking_tokens + int(result.thinking_tokens),
        "prompt_tokens": data.prompt_tokens + int(result.prompt_tokens),
        "model_used": result.model or model,
    }
    bases = {w.path: w.previous for w in tools.ctx.store.file_writes(record.id)}
    try:
        if result.done_reason == REPEATING:
            raise AnswerError(
                f"the answer fell into a loop, the same lines over and over (stopped after {result.completion_tokens} "
                "tokens); " + ("write each edit block once" if data.answer_form == "edits"
                               else "write each file once and end the answer after its closing fence")
            )
        if result.done_reason == "length":
            thought = (f", {result.thinking_tokens} of them thinking (ask with think=false, or a model that "
                       "does not think)") if result.thinking_tokens else ""
            raise AnswerError(
                f"the answer was cut at the token limit ({result.completion_tokens} tokens{thought}); "
                + ("use fewer, smaller edit blocks" if data.answer_form == "edits" else "write shorter files")
            )
        # CPU work on whole files (a near-miss SEARCH builds the closest-lines suggestion): off the event loop.
        contents = await read_answer_off_loop(data.answer_form, result.text, outputs=data.output_paths, bases=bases)
    except AnswerError as exc:
        _generation_failed(tools, record, result.text, str(exc), extra=counters)
        return
    number, root = data.attempt, tools.root

    def journal(tx: Transaction, moved: MachineRecord) -> None:
        journaled = {w.path for w in tx.file_writes(record.id)}
        for path, content in contents.items():
            if path not in journaled:  # packed by a version that journaled no bases: the base is what is there now
                tx.journal_base(record.id, path, previous=read_bases(root, [path])[path])
            tx.journal_content(record.id, path, content=content, attempt=number)

    tools.moves.fire(
        record, "generated", data={**counters, "last_answer": result.text},
        payload={"attempt": number, "tokens": result.completion_tokens, "prompt_tokens": result.prompt_tokens,
                 "thinking_tokens": result.thinking_tokens},
        after=journal,
    )


def _floor(data: RunData, num_ctx: int) -> int:
    """The answer's floor; runs packed before it was recorded kept a quarter of num_ctx."""
    if data.answer_floor is not None:
        return data.answer_floor
    room = max(256, min(4096, num_ctx // 4))
    return 2 * room if data.think is not False else room


async def _pack(
    tools: StepTools, record: MachineRecord, data: RunData, executor: Executor, *, model: str,
) -> tuple[MachineRecord, RunData]:
    backend, num_ctx = executor.backend, int(executor.num_ctx)
    bases = read_bases(tools.root, data.output_paths)  # what the model sees is what later writes compare with
    guard = await backend.count_prompt(GenerateRequest(model=model, messages=(), num_ctx=num_ctx))
    form, rule = data.answer_form, None
    if form == "auto":
        choice = run_form(tools.ctx.project.delegation_log, executor, model=model, bases=bases,
                          count=counter(backend, guard))
        form, rule = choice.form, choice.rule
    changes = pack(tools.root, data, backend, num_ctx, guard=guard, form=form, bases=bases)
    changes.update(answer_form_rule=rule, backend=backend.name)
    context_tokens = changes.pop("context_tokens")

    def journal_bases(tx: Transaction, moved: MachineRecord) -> None:
        for path, previous in bases.items():
            tx.journal_base(moved.id, path, previous=previous)

    record = tools.moves.note(record.id, "packed", data=changes, payload={
        "context_tokens": context_tokens, "answer_form": form, "answer_form_rule": rule,
        "files_skipped": [s["path"] for s in changes["files_skipped"]]}, after=journal_bases)
    return record, RunData.from_json(record.data)


async def _generate(
    tools: StepTools, attempt: Attempt, executor: Executor, data: RunData, *, model: str, record_id: str,
) -> GenerateResult:
    assert data.prompt is not None
    backend, num_ctx = executor.backend, int(executor.num_ctx)
    floor = _floor(data, num_ctx)
    base = prompt_messages(data.prompt)
    guard = await backend.count_prompt(GenerateRequest(model=model, messages=(), num_ctx=num_ctx))
    messages = fit_history(base, data.history, counter(backend, guard), num_ctx - floor, form=data.answer_form)
    await safe_progress(attempt.progress, data.attempt - 1, data.max_attempts, f"attempt {data.attempt}: generating")
    schema = answer_schema(data.output_paths) if data.answer_form == "json" else None
    request = GenerateRequest(model=model, messages=messages, schema=schema, num_ctx=num_ctx, max_tokens=floor,
                              temperature=TEMPERATURE, seed=data.attempt, keep_alive=executor.keep_alive,
                              think=data.think, route_key=route_key(record_id))
    # The answer gets what the context really leaves; a prompt cut silently would drop the very file text the
    # answer must build on, so none is sent that does not fit (refused with numbers).
    request = await fit_answer(backend, request, floor=floor)
    return await generate(backend, request, slots=tools.slots, progress=attempt.progress, attempt=data.attempt,
                          total=data.max_attempts)


async def _generate_through_faults(
    tools: StepTools, record: MachineRecord, attempt: Attempt, executor: Executor, data: RunData, *, model: str,
) -> GenerateResult:
    """A generation that the server (or the way to it) broke is sent again, up to INFRASTRUCTURE_RETRIES times in one
    attempt, each journaled as `backend_retry`: behind a gateway another backend takes it, and a backend that died
    never costs the run an attempt. Past that bound the error is the attempt's, as any other."""
    for retry in range(1, INFRASTRUCTURE_RETRIES + 2):
        try:
            return await _generate(tools, attempt, executor, data, model=model, record_id=record.id)
        except BackendError as exc:
            if not exc.infrastructure or retry > INFRASTRUCTURE_RETRIES:
                raise
            log.warning("backend fault: generating again in the same attempt", run_id=record.id,
                        attempt=data.attempt, retry=retry, detail=str(exc)[:300])
            moved = tools.moves.note(record.id, "backend_retry", data={"backend_retries": data.backend_retries + 1},
                                     payload={"attempt": data.attempt, "retry": retry, "detail": str(exc)[:300]})
            data = RunData.from_json(moved.data)
            # A gateway's failover, a busy backend's generation, a restart: each takes a moment.
            await anyio.sleep(min(RETRY_BACKOFF_MAX_S, RETRY_BACKOFF_S * retry))
    raise AssertionError("unreachable")


def route_key(run_id: str) -> str:
    """The run's key for a gateway's per-session routing: its id in the characters such keys allow (LiteLLM takes
    `[A-Za-z0-9_-]{8,}`; a batch child's id has a dot)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", run_id)


def _generation_failed(
    tools: StepTools, record: MachineRecord, answer: str | None, detail: str, *,
    extra: Mapping[str, Any] | None = None,
) -> None:
    data = RunData.from_json(record.data)
    history: list[Turn] = list(data.history)
    if answer is not None:
        history.append({"answer": as_text(answer), "kind": "answer", "detail": detail})
    update: dict[str, Any] = {**(extra or {}), "history": history, "last_error": detail}
    if data.attempt >= data.max_attempts:
        update["error"] = f"generation failed after {data.attempt} attempt(s): {detail}"
    log.info("generation failed", run_id=record.id, attempt=data.attempt, detail=detail)
    tools.moves.fire(record, "generation_failed", data=update, payload={"attempt": data.attempt,
                                                                        "detail": detail[:500]})


async def _writing(tools: StepTools, record: MachineRecord, attempt: Attempt) -> None:
    writes = [w for w in tools.ctx.store.file_writes(record.id) if w.content is not None and w.status != "conflict"]
    workflow = tools.ctx.project.workflow_dir
    allow = RunData.from_json(record.data).allow_config_writes
    # Look at every file before touching any: a file someone else changed (or a path that now leads somewhere
    # protected) ends the run with nothing of this attempt written. Each write checks its file again.
    seen = {w.path: look(tools.root, w.path, allow_config_writes=allow)[1] for w in writes}
    found = [w for w in writes if apply_action(seen[w.path], w) is Action.CONFLICT]
    if found:  # reported as the look found them, even if someone changes the file again a moment later
        _conflicted(tools, record, [conflict_step(workflow, record.id, w, seen=seen[w.path], during="writing")
                                    for w in found])
        return
    written: list[str] = []
    for n, w in enumerate(writes):
        step = apply_file(tools.root, workflow, record.id, w, allow_config_writes=allow)
        if step.conflict is not None:
            _conflicted(tools, record, [step])
            return
        with tools.ctx.store.transaction() as tx:
            tx.journal_applied(record.id, w.path, applied_hash=str(step.applied_hash), created_dirs=step.created)
        written.append(w.path)
        if n == 0:
            await test_pause("writing")
    tools.moves.fire(record, "written", data={"files_written": written}, payload={"files": written},
                     after=mark_writes(record.id, "written"))


def _conflicted(tools: StepTools, record: MachineRecord, steps: Sequence[ShareStep]) -> None:
    conflicts = [s.conflict for s in steps if s.conflict is not None]
    data = RunData.from_json(record.data)
    log.warning("conflict with another writer", run_id=record.id, conflicts=conflicts)
    tools.moves.fire(record, "conflict", data={"conflicts": [*data.conflicts, *conflicts],
                                                 "error": conflict_message(conflicts)},
                     payload={"conflicts": [c["path"] for c in conflicts]},
                     after=mark_writes(record.id, "conflict", paths=[c["path"] for c in conflicts]))


async def _verifying(tools: StepTools, record: MachineRecord, attempt: Attempt) -> None:
    data = RunData.from_json(record.data)
    await safe_progress(attempt.progress, data.attempt - 1, data.max_attempts, f"attempt {data.attempt}: verifying")
    outcome = await run_verify(data.verify, cwd=tools.root, timeout=data.verify_timeout)
    verification = outcome.as_dict()
    if outcome.passed:
        tools.moves.fire(record, "passed", data={"verification": verification}, payload={"attempt": data.attempt})
        return
    turn: Turn = {"answer": data.last_answer, "kind": "verify", "detail": outcome.output_tail}
    update: dict[str, Any] = {"verification": verification, "history": [*data.history, turn]}
    if data.attempt >= data.max_attempts:
        # The output itself is in `verification.output_tail`: said once.
        update["error"] = (f"verification failed on all {data.attempt} attempt(s) (exit code {outcome.exit_code}"
                           f"{', timed out' if outcome.timed_out else ''}); files rolled back")
    tools.moves.fire(record, "verify_failed", data=update,
                     payload={"attempt": data.attempt, "exit_code": outcome.exit_code,
                              "timed_out": outcome.timed_out})


async def _rolling_back(tools: StepTools, record: MachineRecord, attempt: Attempt) -> None:
    writes = [w for w in tools.ctx.store.file_writes(record.id) if w.status != "conflict"]
    workflow = tools.ctx.project.workflow_dir
    steps: list[ShareStep] = []
    allow = RunData.from_json(record.data).allow_config_writes
    for n, w in enumerate(writes):
        steps.append(rollback_file(tools.root, workflow, record.id, w, allow_config_writes=allow))
        if n == 0:
            await test_pause("rolling_back")
    restored = [s.path for s in steps if s.done]
    conflicts = [s.conflict for s in steps if s.conflict is not None]
    data = RunData.from_json(record.data)
    changes: dict[str, Any] = {}
    if conflicts:
        log.warning("conflict with another writer while rolling back", run_id=record.id, conflicts=conflicts)
        changes = {"conflicts": [*data.conflicts, *conflicts],
                   "error": (data.error + "; " if data.error else "") + conflict_message(conflicts)}

    def mark(tx: Transaction, moved: MachineRecord) -> None:
        tx.mark_file_writes(record.id, "rolled_back", paths=restored)
        tx.mark_file_writes(record.id, "conflict", paths=[c["path"] for c in conflicts])

    tools.moves.fire_by_id(record.id, "rolled_back", data=changes,
                           payload={"files": restored, "conflicts": [c["path"] for c in conflicts]}, after=mark)


STEPS: dict[str, Step] = {
    "pending": _pending,
    "delegating": _delegating,
    "writing": _writing,
    "verifying": _verifying,
    "retrying": _retrying,
    "rolling_back": _rolling_back,
}
