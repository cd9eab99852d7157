"""What a run's prompt holds and what room its answer gets: the prompt packed once per run, the budget that follows
the work, and the check that no prompt is sent that the server would cut.

The budget (issue #12): num_ctx is fixed for the session (changing it reloads the model), so a run takes what it is
given. The files to change go into the prompt whole (edit form: the model copies its SEARCH lines from them), then
the context files that fit; the answer gets what the context really leaves after the prompt, never less than its
floor (`answer_floor`): a few thousand tokens of edit blocks, or every output whole in the `whole` and JSON forms
(the `whole` form's prompt also holds the outputs that exist, whole, as the edit form's does). A run whose
files to change and task leave less than the floor is refused up front with the numbers and how to get a larger
context.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.delegation.context_files import read_text_file
from engine.errors import UserError
from engine.executor.backends.base import Backend, ChatMessage, GenerateRequest, PromptCount, PromptTooLong
from engine.executor.prompting import (
    SHOWS_OUTPUTS,
    ContextFile,
    OutputSpec,
    base_messages,
    example_messages,
    pack_context,
)
from engine.executor.tokens import MESSAGE_OVERHEAD
from states import PromptOverflow, RunData
from states.delegation import PromptText

__all__ = [
    "FEEDBACK_TOKENS",
    "REWRITES_WHOLE",
    "UNGUARDED_MARGIN",
    "answer_floor",
    "counter",
    "editing_files",
    "fit_answer",
    "overflow_record",
    "pack",
    "prompt_messages",
]

UNGUARDED_MARGIN = 1.5
"""Where the server would cut an overlong prompt silently, the engine's estimate (3 characters a token) is taken 1.5
times: 2 characters a token, what dense code (minified, base64, long identifiers) costs with current tokenizers."""
FEEDBACK_TOKENS = 256
"""Room kept for the failing output that a retry adds to the prompt."""
REWRITES_WHOLE = ("whole", "json")
"""The forms whose answer holds every output complete."""
LARGER_CONTEXT = ("enable a larger context: `local-llm disable`, then `LOCAL_LLM_NUM_CTX=<tokens> local-llm enable` "
                  "(or a model with a longer context)")


def answer_floor(num_ctx: int, *, form: str, whole_tokens: int = 0, thinking: bool = False) -> int:
    """The least room an answer must have. Edit blocks: an eighth of the context (256 to 2,048 tokens). `whole` and
    JSON forms: that, or every output whole (`whole_tokens`, what the existing outputs weigh) plus some, whichever is
    more. Twice as much when the model may think first (its reasoning spends the same room)."""
    floor = max(256, min(2048, num_ctx // 8))
    if form in REWRITES_WHOLE:
        floor = max(floor, whole_tokens + whole_tokens // 8 + 128)
    return 2 * floor if thinking else floor


def editing_files(bases: Mapping[str, bytes | None]) -> list[ContextFile]:
    """The outputs that exist, as text for the prompt; one that is not UTF-8 cannot be edited as text."""
    files = []
    for path, data in bases.items():
        if data is None:
            continue
        try:
            files.append(ContextFile(path, data.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise UserError(f"output {path} is not valid UTF-8 text (byte {exc.start}); the model can only change "
                            "text files: leave it out of output_files") from None
    return files


def pack(
    root: Path, data: RunData, backend: Backend, num_ctx: int, *, guard: PromptCount, form: str,
    bases: Mapping[str, bytes | None],
) -> dict[str, Any]:
    """The run's first messages (packed once and kept in its data, so every attempt, and a resumed run, sends them
    byte for byte) with as many context files as fit beside the files to change and the answer's floor; returns the
    data changes (prompt, files_skipped, num_ctx, answer_form, answer_floor). `guard` is what the backend says of
    its counts: where an estimate stands before a silent cut it is taken with UNGUARDED_MARGIN."""
    outputs = [OutputSpec(o["path"], o["description"]) for o in data.output_files]
    # Edit and whole forms: the files to change are in the prompt whatever it costs (copied from, or rewritten);
    # the JSON form rewrites them from the context files it is given.
    editing = editing_files(bases) if form in SHOWS_OUTPUTS else []
    count = counter(backend, guard)
    system, user = base_messages(data.task, data.task_type, outputs, [], form=form, editing=editing)
    examples = [m.content for m in example_messages(form)]
    fixed = count(system.content) + count(user.content) + 16 + sum(count(e) + MESSAGE_OVERHEAD for e in examples)
    whole = (sum(count(b.decode("utf-8", "replace")) for b in bases.values() if b is not None)
             if form in REWRITES_WHOLE else 0)
    floor = answer_floor(num_ctx, form=form, whole_tokens=whole, thinking=data.think is not False)
    reserve = floor + (min(floor, 512) + FEEDBACK_TOKENS if data.max_attempts > 1 else 0)
    if fixed + floor > num_ctx:
        what = "the task and the files to change" if editing else "the task and the instructions"
        raise PromptTooLong(
            f"{what} are {fixed} tokens ({_how(guard)}) and the answer needs at least {floor}, more than num_ctx "
            f"{num_ctx}{_why(guard)}; give fewer output files per delegation, or {LARGER_CONTEXT}",
            prompt_tokens=fixed, num_ctx=num_ctx, exact=guard.exact,
            refused_by="tokenizer" if guard.exact else "estimate",
        )
    files = [
        ContextFile(p, read_text_file(root, p, field=f"context_files[{i}]", allow_secrets=data.allow_secrets))
        for i, p in enumerate(data.context_files) if not (form in SHOWS_OUTPUTS and bases.get(p) is not None)
    ]
    packed = pack_context(files, budget=max(0, num_ctx - fixed - reserve), count=count, task=data.task,
                          outputs=outputs)
    system, user = base_messages(data.task, data.task_type, outputs, packed.included, form=form, editing=editing)
    prompt: PromptText = {"system": system.content, "user": user.content}
    if examples:
        prompt["examples"] = examples
    return {"prompt": prompt, "files_skipped": list(packed.skipped),
            "num_ctx": num_ctx, "answer_form": form, "answer_floor": floor, "context_tokens": packed.tokens}


def prompt_messages(prompt: PromptText) -> tuple[ChatMessage, ...]:
    """A run's first messages, as packed: the system message, the shown exchanges (user and assistant in turn), the
    user message; every attempt sends them byte for byte."""
    shown = tuple(ChatMessage("user" if i % 2 == 0 else "assistant", text)
                  for i, text in enumerate(prompt.get("examples", [])))
    return (ChatMessage("system", prompt["system"]), *shown, ChatMessage("user", prompt["user"]))


def counter(backend: Backend, guard: PromptCount) -> Callable[[str], int]:
    """The backend's token count, with UNGUARDED_MARGIN where an estimate is all that stands before a silent cut."""
    margin = _margin(guard)
    if margin == 1.0:
        return backend.count_tokens
    return lambda text: math.ceil(backend.count_tokens(text) * margin)


async def fit_answer(backend: Backend, request: GenerateRequest, *, floor: int) -> GenerateRequest:
    """The request with `max_tokens` set to what the context really leaves once this prompt is in it (never under
    `floor`), counted once. A prompt that leaves less than `floor` is refused before sending when the count says so
    for sure (the model's tokenizer) or when nothing else would (a server that cuts an overlong prompt silently;
    there the conservative estimate decides). Where the server refuses overlong prompts itself, an estimate over the
    limit is no reason to stop: the server has the real count."""
    count = await backend.count_prompt(request)
    tokens = math.ceil(count.tokens * _margin(count))
    room = max(floor, request.num_ctx - tokens - 8)
    limit = request.num_ctx - room
    if tokens <= limit or not (count.exact or not count.server_refuses_overflow):
        return replace(request, max_tokens=room)
    raise PromptTooLong(
        f"the prompt is {tokens} tokens ({_how(count)}) and num_ctx {request.num_ctx} holds {limit} beside the "
        f"{room} kept for the answer{_why(count)}; pass fewer or smaller context files, or {LARGER_CONTEXT}",
        prompt_tokens=tokens, num_ctx=request.num_ctx, exact=count.exact,
        refused_by="tokenizer" if count.exact else "estimate",
    )


def _margin(count: PromptCount) -> float:
    return 1.0 if count.exact or count.server_refuses_overflow else UNGUARDED_MARGIN


def _how(count: PromptCount) -> str:
    if count.exact:
        return "counted with the model's tokenizer"
    if count.server_refuses_overflow:
        return "a conservative estimate"
    return f"a conservative estimate, taken {UNGUARDED_MARGIN:g} times"


def _why(count: PromptCount) -> str:
    return f" ({count.unguarded})" if count.unguarded else ""


def overflow_record(exc: PromptTooLong, *, answer_room: int) -> PromptOverflow:
    return {"prompt_tokens": exc.prompt_tokens, "exact": exc.exact, "num_ctx": exc.num_ctx,
            "answer_room": answer_room, "refused_by": exc.refused_by}
