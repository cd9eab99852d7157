"""The one fence reader: which lines of an answer are fences, and where the block a fence opens ends. Every form
reads fenced blocks through it (the edit blocks' wrappers, a new file given whole, the `whole` form's files, the JSON
form's fenced JSON and its fallback to fenced files: parse.py), so they all treat fences alike:

- a fence is 3 or more backticks or tildes, indented by at most 3 spaces, then an optional info string (a language
  tag, a path, both); a backtick fence's info string holds no backtick (CommonMark);
- a block ends at a bare fence of its own character at least as long as its opening one; a fence with an info
  string inside it opens a nested block (a Markdown file that shows code); a block with no end runs to the end of
  the answer (it was cut at the token limit).

Runaway answers (tens of KB of fence lines) must cost the parser little: each line is read once, the search for a
block's end visits only fence lines (and the lines the caller stops at), and once the searches of one answer have
visited MAX_FENCE_VISITS such lines, the remaining fence lines are read as plain text (a real answer opens a few
dozen blocks of a few hundred lines: a few thousand visits).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_FENCE_VISITS", "AnswerLines", "Fence", "read_fence"]

MAX_FENCE_VISITS = 50_000
"""Fence lines the searches for blocks' ends may visit in one answer (a tenth of a second); past them fence lines
are plain text (noted by the reader), so 40 KB of fence lines cost no more than that."""

_FENCE = re.compile(r"[ \t]{0,3}(?P<fence>`{3,}|~{3,})(?P<info>.*)")


@dataclass(frozen=True)
class Fence:
    char: str
    length: int
    info: str

    def closed_by(self, other: Fence) -> bool:
        return other.char == self.char and other.length >= self.length and not other.info


def read_fence(line: str) -> Fence | None:
    m = _FENCE.fullmatch(line)
    if m is None:
        return None
    mark, info = m.group("fence"), m.group("info").strip()
    if mark[0] == "`" and "`" in info:
        return None
    return Fence(mark[0], len(mark), info)


def _maybe_fence(line: str) -> Fence | None:
    head = line[:4].lstrip(" \t")
    return read_fence(line) if head[:1] in ("`", "~") else None


class AnswerLines:
    """An answer split into lines (a BOM and CRLF dropped), each line's fence read once.

    `stop`: lines that end the search for a block's end (the edit reader's SEARCH lines: a fence that reaches one
    first wraps edit blocks and is not a file)."""

    def __init__(self, text: str, *, stop: Callable[[str], bool] | None = None) -> None:
        self.lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
        self._fences = [_maybe_fence(line) for line in self.lines]
        self.stops = [stop(line) for line in self.lines] if stop is not None else [False] * len(self.lines)
        self._marks = [i for i, line in enumerate(self.lines) if self._fences[i] is not None or self.stops[i]]
        self.visits = 0
        self.spent = False
        """Whether the searches used up MAX_FENCE_VISITS: the remaining fence lines are plain text."""

    def __len__(self) -> int:
        return len(self.lines)

    def fence(self, i: int) -> Fence | None:
        """The fence on line `i`, or None (also once the searches used up MAX_FENCE_VISITS)."""
        return None if self.spent else self._fences[i]

    def find_close(self, i: int, fence: Fence) -> tuple[int | None, bool]:
        """The line that closes the block `fence` opens on line `i` (None: none), and whether a `stop` line comes
        first. A search that uses up MAX_FENCE_VISITS ends as if a `stop` line came first: the caller reads on line
        by line, with no fences left."""
        depth, marks = 0, self._marks
        for n in range(bisect.bisect_right(marks, i), len(marks)):  # indices, not a slice: no copy per search
            k = marks[n]
            self.visits += 1
            if self.visits >= MAX_FENCE_VISITS:
                self.spent = True
                return None, True
            if self.stops[k]:
                return None, True
            inner = self._fences[k]
            if inner is None or inner.char != fence.char or inner.length < fence.length:
                continue
            if inner.info:
                depth += 1
            elif depth:
                depth -= 1
            else:
                return k, False
        return None, False
