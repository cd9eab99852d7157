"""What the executor model sees. Pure functions: no IO, no backend (the answer is read by `answers`).

- `pack_context`: fit the context files into a token budget; the least useful are trimmed or left out, and reported.
- `base_messages` / `attempt_messages`: attempt N repeats attempt 1's system and user messages byte for byte and adds
  (previous answer, failure) turns, so the backend's prompt cache is reused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from engine.executor.backends.base import ChatMessage
from engine.executor.edits import APPLIES_TO, EDIT_INSTRUCTIONS
from states.delegation import Turn

__all__ = [
    "SHOWS_OUTPUTS",
    "WHOLE_EXAMPLES",
    "ContextFile",
    "Example",
    "OutputSpec",
    "PackedContext",
    "attempt_messages",
    "base_messages",
    "example_messages",
    "feedback_message",
    "pack_context",
]

TokenCounter = Callable[[str], int]

SYSTEM_PROMPT = (
    "You are a precise code generator. You receive a task, context files and the list of files to write. "
    'Answer with one JSON object only: its key "files" holds a list with one object per file to write, each with the '
    'keys "path" (the file\'s path, as listed) and "content" (the complete text of the file). '
    "Write every requested file in full. No explanations, no markdown."
)
"""The JSON form. No placeholder text (`<...>`, `...`): the embedded model copied such a placeholder into the file."""

SYSTEM_PROMPT_WHOLE = (
    "You are a precise code generator. You receive a task, context files and the list of files to write. "
    "For each file to write, answer with its path on a line of its own, then the complete file in one fenced code "
    "block. Nothing else."
)
"""The `whole` form: the simplest to follow (aider's "whole" edit format). Its examples are exchanges of their own
(WHOLE_EXAMPLES), not text in this prompt."""


SYSTEM_PROMPT_EDITS = (
    "You are a precise code editor. You receive a task, context files, the files to write and the current content of "
    "those that exist. Change them with edit blocks; create new files whole. No explanations.\n\n" + EDIT_INSTRUCTIONS
)

_TYPE_HINTS = {
    "generate": "Generate the requested code.",
    "test": "Write tests for the code in the context files.",
    "docs": "Write or add documentation (docstrings, comments, markdown) without changing behaviour.",
    "refactor": "Refactor mechanically; keep behaviour identical.",
    "translate": "Translate the code in the context files into the requested language, keeping behaviour.",
}
SHOWS_OUTPUTS = ("edits", "whole")
"""The forms whose prompt holds the current content of the outputs that exist (edit blocks copy from it; `whole`
rewrites it); the JSON form sees only the context files, as it always did."""
TRIM_MIN_TOKENS = 128
"""A file is trimmed into the remaining budget only if at least this many tokens of it fit; else it is left out."""


@dataclass(frozen=True)
class OutputSpec:
    path: str
    description: str = ""


@dataclass(frozen=True)
class ContextFile:
    path: str
    text: str


@dataclass(frozen=True)
class PackedContext:
    included: tuple[ContextFile, ...]
    skipped: tuple[dict[str, Any], ...]
    """`{path, reason, tokens, kept_tokens}` for each file left out or trimmed."""
    tokens: int


def _file_block(f: ContextFile) -> str:
    return f"--- {f.path} ---\n{f.text}\n--- end of {f.path} ---"


def _usefulness(f: ContextFile, index: int, task: str, outputs: Sequence[OutputSpec]) -> tuple[int, int]:
    """Higher first: files the task or an output description names, then the caller's order."""
    name = PurePosixPath(f.path).name
    stem = PurePosixPath(f.path).stem
    text = " ".join([task, *(o.description for o in outputs), *(o.path for o in outputs)])
    named = f.path in text or name in text or (len(stem) > 2 and re.search(rf"\b{re.escape(stem)}\b", text) is not None)
    return (1 if named else 0, -index)


def _trim(text: str, budget: int, count: TokenCounter) -> str | None:
    """The longest head of `text` (whole lines) whose block fits `budget` tokens, or None."""
    lines = text.splitlines(keepends=True)
    lo, hi, best = 0, len(lines), None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = "".join(lines[:mid]) + f"\n[trimmed here: {len(lines) - mid} more lines not shown]"
        if count(candidate) <= budget:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best


def pack_context(
    files: Sequence[ContextFile], *, budget: int, count: TokenCounter, task: str = "",
    outputs: Sequence[OutputSpec] = (),
) -> PackedContext:
    """Keep the most useful files whole while they fit `budget` tokens; trim the first that does not, leave out
    the rest. The caller's order is kept in the prompt."""
    ranked = sorted(range(len(files)), key=lambda i: _usefulness(files[i], i, task, outputs), reverse=True)
    remaining = budget
    kept: dict[int, ContextFile] = {}
    skipped: list[dict[str, Any]] = []
    for i in ranked:
        f = files[i]
        tokens = count(_file_block(f)) + 2
        if tokens <= remaining:
            kept[i] = f
            remaining -= tokens
            continue
        overhead = count(_file_block(ContextFile(f.path, ""))) + 2
        if remaining - overhead >= TRIM_MIN_TOKENS:
            trimmed = _trim(f.text, remaining - overhead, count)
            if trimmed is not None:
                kept[i] = ContextFile(f.path, trimmed)
                used = count(_file_block(kept[i])) + 2
                remaining -= used
                skipped.append({"path": f.path, "reason": "trimmed to fit the context window",
                                "tokens": tokens, "kept_tokens": used})
                continue
        skipped.append({"path": f.path, "reason": "does not fit the context window", "tokens": tokens,
                        "kept_tokens": 0})
    order = {f.path: n for n, f in enumerate(files)}
    skipped.sort(key=lambda s: order.get(s["path"], 0))
    return PackedContext(tuple(kept[i] for i in sorted(kept)), tuple(skipped), budget - remaining)


def user_message(
    task: str, task_type: str, outputs: Sequence[OutputSpec], context: Sequence[ContextFile],
    editing: Sequence[ContextFile] = (), *, form: str = "json",
) -> str:
    """The task, the files to write, the context files and (edit form) the files to change, in full: their SEARCH
    lines are copied from here."""
    parts = [f"Task ({task_type}): {task}", _TYPE_HINTS.get(task_type, "")]
    parts.append("Files to write:")
    exists = {f.path for f in editing}

    def how(path: str) -> str:
        if form != "edits":
            return ""
        return (" (exists: change it with edit blocks)" if path in exists
                else " (new: its path, then the whole file in one fenced block)")

    parts += [f"- {o.path}" + (f": {o.description}" if o.description else "") + how(o.path) for o in outputs]
    if context:
        parts.append("Context files:")
        parts += [_file_block(f) for f in context]
    if editing:
        parts.append("Current content of the files to change (SEARCH copies these lines exactly):" if form == "edits"
                     else "Current content of the files to write (write each one again in full, changed):")
        parts += [_file_block(f) for f in editing]
    return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class Example:
    """One shown exchange of the `whole` form: a task in the engine's own user message, and its complete answer."""

    task: str
    output: OutputSpec
    answer: str
    current: str | None = None
    """The file's content before the task (an existing file the task changes), shown as the engine shows one."""


WHOLE_EXAMPLES = (
    Example("Write hello.py with one function, hello(), that returns the text 'hi'.",
            OutputSpec("hello.py", "Python: def hello()"), "hello.py\n```python\ndef hello():\n    return 'hi'\n```"),
    Example("Write config.py with the port number 8080 as the constant PORT.",
            OutputSpec("config.py", "Python: PORT"), "config.py\n```python\nPORT = 8080\n```"),
    Example("In config.py, set PORT to 9090 instead of 8080.", OutputSpec("config.py", "Python: PORT is 9090"),
            "config.py\n```python\nHOST = 'example.org'\nPORT = 9090\n```",
            current="HOST = 'example.org'\nPORT = 8080\n"),
)
"""Shown to the model as earlier turns of the chat (user message, assistant answer), before the real task: the
embedded 135M model imitates a shown exchange in its chat template far better than a described or inlined one. With
the one inlined example (a function) it wrote functions where a constant was asked and gave an existing file back
unchanged; these three cover the shapes of a small file (a function, a constant, a change to an existing file, kept
whole). Real, complete answers, never templates: copied by mistake, they fail verify instead of being written as
placeholder text. Measured on the trivial tier (docs/eval.md): first try 7/12 with the inlined example, 10/12 so."""


def example_messages(form: str) -> tuple[ChatMessage, ...]:
    """The form's shown exchanges, as (user, assistant) messages to send between the system and the user message;
    none for the edit and JSON forms."""
    if form != "whole":
        return ()
    messages: list[ChatMessage] = []
    for example in WHOLE_EXAMPLES:
        editing = [ContextFile(example.output.path, example.current)] if example.current is not None else []
        messages.append(ChatMessage("user", user_message(example.task, "generate", [example.output], [], editing,
                                                         form=form)))
        messages.append(ChatMessage("assistant", example.answer))
    return tuple(messages)


def base_messages(
    task: str, task_type: str, outputs: Sequence[OutputSpec], context: Sequence[ContextFile], *,
    form: str = "json", editing: Sequence[ContextFile] = (),
) -> tuple[ChatMessage, ChatMessage]:
    system = {"edits": SYSTEM_PROMPT_EDITS, "whole": SYSTEM_PROMPT_WHOLE}.get(form, SYSTEM_PROMPT)
    return (ChatMessage("system", system),
            ChatMessage("user", user_message(task, task_type, outputs, context,
                                             editing if form in SHOWS_OUTPUTS else (), form=form)))


def feedback_message(kind: str, detail: str, *, form: str = "json") -> str:
    """What the model is told after a failed attempt. Edit form: a failed answer's detail is already the retry
    message (engine.executor.edits.retry_message, which says which text the next blocks apply to)."""
    if form == "edits":
        if kind == "verify":
            return f"verification failed:\n{detail}\nFix it with edit blocks. {APPLIES_TO}"
        return detail
    if form == "whole":
        again = ("Answer again with every file complete: its path on a line of its own, then the file in one fenced "
                 "block.")
        if kind == "verify":
            return f"verification failed:\n{detail}\nFix the files. {again}"
        return f"your answer could not be used: {detail}\n{again}"
    if kind == "verify":
        return f"verification failed:\n{detail}\nFix the files and answer again with the complete files as JSON."
    return f"your answer could not be used: {detail}\nAnswer again with the complete files as JSON."


def attempt_messages(
    base: Sequence[ChatMessage], history: Sequence[Turn], *, form: str = "json",
) -> list[ChatMessage]:
    """Attempt N: the same first messages, then one (assistant answer, user feedback) pair per failed attempt."""
    messages = list(base)
    for turn in history:
        messages.append(ChatMessage("assistant", turn["answer"]))
        messages.append(ChatMessage("user", feedback_message(turn["kind"], turn["detail"], form=form)))
    return messages
