"""Reading an attempt's answer into the bytes of each output, in the run's answer form: edit blocks applied to the
run's bases (engine.executor.edits), or every output whole (`whole`: fenced files; `json`: the JSON object, with
fenced files as its fallback; engine.executor.answers). All or nothing: an answer with any problem raises
AnswerError, whose message is what the model is told on the next attempt.

Reading is CPU work on text the model wrote (a runaway answer is tens of KB of fences or thousands of divider
lines), so the run reads it off the event loop (`read_answer_off_loop`: a thread, or a worker process for a large
one): the server keeps answering meanwhile."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial

import anyio.to_process
import anyio.to_thread

from engine.executor.answers import AnswerError, parse_answer, parse_whole_answer
from engine.executor.edits import apply_answer, parse_edits, retry_message

__all__ = ["PROCESS_ABOVE_BYTES", "as_text", "read_answer", "read_answer_off_loop"]

PROCESS_ABOVE_BYTES = 32 * 1024
"""An answer and bases larger than this are read in a worker process, smaller ones in a thread. The work grows with
their product (a near-miss SEARCH of hundreds of lines: seconds of CPU), and a thread would hold the GIL against the
event loop all that time; a worker process costs about a second to start, once per event loop, which small answers
(milliseconds of work) should not pay."""

_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_surrogate(text: str, what: str) -> None:
    # A server's JSON may carry "\ud800" alone; Python decodes it to a str that no file (UTF-8) can hold.
    if match := _SURROGATE.search(text):
        line = text.count("\n", 0, match.start()) + 1
        raise AnswerError(f"{what} holds a lone surrogate (U+{ord(match.group()):04X}, line {line}), which is not "
                          "text and cannot be written as UTF-8; write the characters themselves, not \\ud800-style "
                          "escapes of half of one")


def as_text(text: str) -> str:
    """`text` with any lone surrogate replaced, so it can be stored and sent back to the model in a retry."""
    return text.encode("utf-8", "replace").decode("utf-8")


def read_answer(
    form: str, text: str, *, outputs: Sequence[str], bases: Mapping[str, bytes | None], ended: bool = True,
) -> dict[str, bytes]:
    """Every output's bytes after this answer. Edit form: the blocks apply to the base each output had when the run
    packed its prompt (an output no block touches keeps its base, so a file an earlier attempt changed is put back).
    `ended`: the model stopped on its own (the run refuses an answer cut at the token limit before reading it), so a
    whole file left open at the end of the answer is complete."""
    _no_surrogate(text, "the answer")
    if form != "edits":
        read = parse_whole_answer if form == "whole" else parse_answer
        files = read(text, outputs, ended=ended)
        for path in outputs:
            _no_surrogate(files[path], f"the content of {path}")
        return {path: files[path].encode("utf-8") for path in outputs}
    parsed = parse_edits(text, outputs=outputs)
    applied = apply_answer(parsed, {path: bases.get(path) for path in outputs})
    if not applied.ok:
        raise AnswerError(retry_message(applied.problems))
    contents: dict[str, bytes] = {}
    for path in outputs:
        new = applied.contents.get(path, bases.get(path))
        if new is not None:
            contents[path] = new
    return contents


async def read_answer_off_loop(form: str, text: str, *, outputs: Sequence[str],
                               bases: Mapping[str, bytes | None]) -> dict[str, bytes]:
    """`read_answer` off the event loop, so the server keeps answering while it runs and a cancel does not wait
    for it (the worker process is killed, the thread abandoned)."""
    work = partial(read_answer, form, text, outputs=outputs, bases=dict(bases))
    size = len(text) + sum(len(base) for base in bases.values() if base is not None)
    if size > PROCESS_ABOVE_BYTES:
        return await anyio.to_process.run_sync(work, cancellable=True)
    return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
