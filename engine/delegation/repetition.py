"""An answer caught in a loop: the same lines, verbatim, over and over at its end.

Small models (SmolLM2-135M on the embedded backend, and larger ones now and then) fall into a loop inside a file's
block and never close it: the same class or the same two lines until the answer room is full. On a CPU that was
7,400 tokens and about 15 minutes for an answer no reader could use (docs/eval.md). Generation watches its own tail
(`generation.generate`) and stops once one block of lines has come back `times` times in a row and the run of copies
is at least `chars` long; the attempt then ends unusable, as one cut at the token limit does.

A legitimate file rarely repeats a block of over a thousand characters four times verbatim (tests, configs and data
differ in a name or a value); `$LOCAL_LLM_REPEAT_TIMES=0` turns the guard off for one that does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from engine.env import env_bound
from engine.errors import InvalidArgument

__all__ = [
    "DEFAULT_REPEAT_CHARS",
    "DEFAULT_REPEAT_TIMES",
    "REPEAT_TIMES_ENV",
    "Repetition",
    "RepetitionLimits",
    "find_repetition",
]

REPEAT_TIMES_ENV = "LOCAL_LLM_REPEAT_TIMES"
DEFAULT_REPEAT_TIMES = 4
DEFAULT_REPEAT_CHARS = 1200
MAX_BLOCK_LINES = 40
WINDOW_CHARS = 12_000
"""Only the answer's tail is searched: MAX_BLOCK_LINES lines of up to ~75 characters, four times."""


@dataclass(frozen=True)
class RepetitionLimits:
    times: int = DEFAULT_REPEAT_TIMES
    """Copies of one block in a row that stop a generation; 0: never stop."""
    chars: int = DEFAULT_REPEAT_CHARS
    """...once the copies together are at least this long."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RepetitionLimits:
        env = os.environ if environ is None else environ
        times = int(env_bound(env, REPEAT_TIMES_ENV, DEFAULT_REPEAT_TIMES))
        if times == 1:  # one copy is no repetition: every long block would stop the answer
            raise InvalidArgument(f"${REPEAT_TIMES_ENV}", "2 or more copies in a row (0 turns the guard off)",
                                  env[REPEAT_TIMES_ENV])
        return cls(times=times)

    @property
    def on(self) -> bool:
        return self.times > 0


@dataclass(frozen=True)
class Repetition:
    lines: int
    """The repeated block's length in lines."""
    times: int
    start: int
    """Where the copies begin in the text: text[:start + the block's length] is the answer with one copy left."""
    block_chars: int

    def describe(self) -> str:
        what = "line" if self.lines == 1 else f"{self.lines} lines"
        return f"the same {what} {self.times} times in a row"


def find_repetition(text: str, limits: RepetitionLimits = RepetitionLimits()) -> Repetition | None:
    """The loop `text` ends in (the line being written left out), or None. Pure: called on the growing answer."""
    if not limits.on:
        return None
    offset = max(0, len(text) - WINDOW_CHARS)
    lines = text[offset:].split("\n")[:-1]  # the last piece is the line still being written (or "")
    ends = _line_ends(lines, offset)
    for size in range(1, MAX_BLOCK_LINES + 1):
        if len(lines) < size * limits.times:
            break
        block = lines[-size:]
        if not any(line.strip() for line in block):
            continue
        times = 1
        while (times + 1) * size <= len(lines) and lines[-(times + 1) * size:-times * size] == block:
            times += 1
        block_chars = sum(len(line) + 1 for line in block)
        if times >= limits.times and times * block_chars >= limits.chars:
            start = ends[len(lines) - times * size - 1] if len(lines) > times * size else offset
            return Repetition(lines=size, times=times, start=start, block_chars=block_chars)
    return None


def _line_ends(lines: list[str], offset: int) -> list[int]:
    """Per line, the offset in the text just past its newline."""
    ends, at = [], offset
    for line in lines:
        at += len(line) + 1
        ends.append(at)
    return ends
