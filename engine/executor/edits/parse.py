"""Reading an edit-block answer. Pure: text in, blocks and problems out; the files are not looked at (apply.py does).

The form (docs/edit-blocks.md): the path on its own line, a fence, `<<<<<<< SEARCH`, the exact old
lines, `=======`, the new lines, `>>>>>>> REPLACE`, the closing fence; several blocks per file and per fence. A new
file is an empty SEARCH, or (tolerated) its whole content in a plain fenced block right after its path.

What real models do and how it is read:
- Markers count only as whole lines: 5 to 9 `<`, `=` or `>` (7 asked for), the words case-insensitive, trailing
  blanks allowed. Every `=======`-like line between SEARCH and REPLACE is a possible divider; the block keeps every
  reading and the applier picks the one whose SEARCH matches (an `.rst` underline inside the content stays content).
- Fences (3+ backticks or tildes) are only wrappers: the block is read by its markers, so a fence inside the content
  (Markdown) never ends a block, and a missing or extra fence changes nothing. A plain fenced file ends at a bare fence
  of its own character at least as long as its opening one; a fence with an info string inside it opens a nested one.
- The path: the nearest non-blank line above the block (fence lines passed over), alone on its line, possibly in
  bold or backticks, after `#`, `//`, `--`, a list bullet, `File:`/`Path:`, with a trailing colon, `./` or `\\`
  spellings; or a token of the fence's info string (```` ```python src/a.py ````); or, in a prose line just above the
  block, the one requested path it names. A block with no path of its own belongs to the file of the block before it;
  with no block before it and one requested output, to that output (noted).
- A path that is not a requested output (compared case-sensitively after normalising the spelling) refuses the block
  and every following block without a path of its own; the message names the allowed paths.
- A block with no `>>>>>>> REPLACE` line (the answer cut at the token limit, or the next block started) is an error
  that says so; so is a block with no `=======`. An exact repeat of an earlier block is dropped (noted).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.executor.edits.model import (
    NO_BLOCKS,
    NO_DIVIDER,
    NO_PATH,
    UNFINISHED,
    UNKNOWN_PATH,
    EditBlock,
    EditProblem,
    ParsedAnswer,
)

__all__ = ["is_divider", "is_replace", "is_search", "normalize_path", "parse_edits"]

_SEARCH = re.compile(r"<{5,9} ?SEARCH[ \t]*", re.IGNORECASE)
_DIVIDER = re.compile(r"={5,9}[ \t]*")
_REPLACE = re.compile(r">{5,9} ?REPLACE[ \t]*", re.IGNORECASE)
_FENCE = re.compile(r"[ \t]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>.*?)[ \t]*")
_PREFIX = re.compile(r"^(?:#{1,6}(?=[\s`*]|\w)|//+|--|;+|>|[-*+](?=\s)|\d+[.)](?=\s)|<!--|/\*)\s*")
_LABEL = re.compile(r"^(?:file(?:name)?|path)\s*[:=]\s*", re.IGNORECASE)
_PATH_LIKE = re.compile(r"[\w.\-/\\]+")
_EXTENSION = re.compile(r".*\.[A-Za-z][A-Za-z0-9]*")
_WRAPPERS = "*_`'\""


def is_search(line: str) -> bool:
    return _SEARCH.fullmatch(line) is not None


def is_divider(line: str) -> bool:
    return _DIVIDER.fullmatch(line) is not None


def is_replace(line: str) -> bool:
    return _REPLACE.fullmatch(line) is not None


def _is_marker(line: str) -> bool:
    return is_search(line) or is_divider(line) or is_replace(line)


def normalize_path(path: str) -> str:
    """The spelling requested paths are stored under (engine.delegation.paths.canonical_relative): `/` for `\\`,
    no `.` or empty segments. The executor does not import the delegation room; a test holds the two equal."""
    return "/".join(part for part in path.strip().replace("\\", "/").split("/") if part not in ("", "."))


@dataclass(frozen=True)
class _Fence:
    char: str
    length: int
    info: str

    def closed_by(self, other: _Fence) -> bool:
        return other.char == self.char and other.length >= self.length and not other.info


def _fence(line: str) -> _Fence | None:
    m = _FENCE.fullmatch(line)
    if m is None:
        return None
    mark, info = m.group("fence"), m.group("info")
    if mark[0] == "`" and "`" in info:
        return None
    return _Fence(mark[0], len(mark), info)


@dataclass(frozen=True)
class _Guess:
    """A path read from the answer: `path` when it is a requested output, else `raw` (a path that is not)."""

    path: str | None = None
    raw: str | None = None
    how: str = ""


class _Paths:
    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = tuple(outputs)
        self._by_spelling = {normalize_path(o): o for o in outputs}
        self._by_spelling.update({o: o for o in outputs})

    def known(self, raw: str) -> bool:
        return raw in self._by_spelling or normalize_path(raw) in self._by_spelling

    def resolve(self, raw: str) -> _Guess | None:
        found = self._by_spelling.get(raw) or self._by_spelling.get(normalize_path(raw))
        if found is not None:
            return _Guess(path=found)
        if _PATH_LIKE.fullmatch(raw) and ("/" in raw or "\\" in raw or _EXTENSION.fullmatch(raw)):
            return _Guess(raw=raw)
        return None

    def from_line(self, line: str, *, prose: bool) -> _Guess | None:
        """The path a line above a block names: alone on its line (decorations allowed), or with `prose`, the one
        requested output a sentence names."""
        text = _undecorate(line)
        if text and (not any(c.isspace() for c in text) or self.known(text)):
            return self.resolve(text)
        if not prose:
            return None
        named = {g.path for token in line.split() if (g := self.resolve(_unwrap(token))) and g.path}
        named |= {o for o in self.outputs if " " in o and o in line}
        if len(named) == 1:
            return _Guess(path=named.pop(), how=f"took the path from the sentence {line.strip()!r}")
        return None

    def from_info(self, info: str) -> _Guess | None:
        """A path in a fence's info string (```` ```python src/a.py ````, ```` ```python:src/a.py ````)."""
        unknown = None
        for token in re.split(r"[\s:=,]+", info):
            token = _unwrap(token)
            if not token:
                continue
            guess = self.resolve(token)
            if guess is not None and guess.path is not None:
                return guess
            unknown = unknown or guess
        return unknown

    def suggest(self, raw: str) -> str:
        spelled = normalize_path(raw)
        near = [o for o in self.outputs if o.lower() == spelled.lower() or o.rsplit("/", 1)[-1] == spelled.rsplit(
            "/", 1)[-1]]
        return f" (did you mean {near[0]}?)" if near else ""


def _unwrap(token: str) -> str:
    """A token without the quotes, bold or backticks around it and the punctuation after it."""
    before = None
    while token != before:
        before = token
        token = token.strip().strip("()[]<>,;")
        token = token[:-1] if token.endswith((":", ".")) and len(token) > 1 else token
        while len(token) > 1 and token[0] == token[-1] and token[0] in _WRAPPERS:
            token = token[1:-1]
    return token


def _undecorate(line: str) -> str:
    text = line.strip()
    for _ in range(4):
        before = text
        text = _PREFIX.sub("", text)
        text = _LABEL.sub("", text)
        text = text.removesuffix("-->").removesuffix("*/").strip()
        text = text[:-1].rstrip() if text.endswith(":") else text
        while len(text) > 1 and text[0] == text[-1] and text[0] in _WRAPPERS:
            text = text[1:-1].strip()
        text = text[:-1].rstrip() if text.endswith(":") else text
        if text == before:
            break
    return text


def _text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


class _Reader:
    def __init__(self, text: str, outputs: Sequence[str]) -> None:
        self.lines = text.lstrip("\ufeff").replace("\r\n", "\n").split("\n")
        self.paths = _Paths(outputs)
        self.blocks: list[EditBlock] = []
        self.problems: list[EditProblem] = []
        self.notes: list[str] = []
        self.last: _Guess | None = None
        self.count = 0
        self.pathless: list[tuple[int, int]] = []
        self.saw_search = False

    def _allowed(self) -> str:
        return ", ".join(self.paths.outputs)

    def path_above(self, i: int) -> _Guess | None:
        j, looked = i - 1, 0
        while j >= 0 and looked < 5:
            line = self.lines[j]
            looked += 1
            if not line.strip():
                j -= 1
                continue
            if _is_marker(line):
                return None
            fence = _fence(line)
            if fence is None:
                return self.paths.from_line(line, prose=True)
            if fence.info and (guess := self.paths.from_info(fence.info)) is not None:
                return guess
            j -= 1
        return None

    def block_path(self, i: int, number: int) -> _Guess | None:
        guess = self.path_above(i)
        if guess is None and self.last is not None:
            return self.last
        if guess is None and len(self.paths.outputs) == 1:
            self.notes.append(f"block {number} names no file: it was read as one for {self.paths.outputs[0]}, "
                              "the only requested output")
            return _Guess(path=self.paths.outputs[0])
        if guess is not None and guess.path is not None and guess.how:
            self.notes.append(f"block {number}: {guess.how}")
        return guess

    def refuse_path(self, guess: _Guess | None, number: int, line: int, source: str) -> bool:
        if guess is None:
            self.problems.append(EditProblem(
                NO_PATH, f"block {number} (line {line} of your answer) names no file: put the file's path on its "
                f"own line just before the block; you may write: {self._allowed()}", block=number, quote=source))
            return True
        if guess.path is None:
            self.problems.append(EditProblem(
                UNKNOWN_PATH, f"block {number} is for {guess.raw}, which is not a file you may write"
                f"{self.paths.suggest(str(guess.raw))}; write only: {self._allowed()}", path=guess.raw,
                block=number, quote=source))
            return True
        return False

    def edit_block(self, i: int) -> int:
        """The block whose SEARCH line is line `i`; returns the line after it."""
        self.saw_search = True
        self.count += 1
        number, lines = self.count, self.lines
        guess = self.block_path(i, number)
        self.last = guess if guess is not None else self.last
        dividers, j, end = [], i + 1, None
        while j < len(lines):
            if is_replace(lines[j]):
                end = j
                break
            if is_search(lines[j]):
                break
            if is_divider(lines[j]):
                dividers.append(j)
            j += 1
        stop = end if end is not None else j
        source = "\n".join(lines[i : stop + 1] if end is not None else lines[i:stop]).rstrip("\n")
        name = guess.path or guess.raw if guess is not None else "an unnamed file"
        if end is None:
            why = ("the next <<<<<<< SEARCH starts first" if j < len(lines) else
                   "the answer ends there: it was probably cut at the token limit, so write fewer or shorter blocks")
            self.problems.append(EditProblem(
                UNFINISHED, f"block {number} for {name} has no >>>>>>> REPLACE line ({why})",
                path=guess.path if guess else None, block=number, quote=source))
            if guess is not None and guess.path is None:
                self.refuse_path(guess, number, i + 1, source)
            return stop
        if self.refuse_path(guess, number, i + 1, source):
            return end + 1
        assert guess is not None and guess.path is not None
        if not dividers:
            self.problems.append(EditProblem(
                NO_DIVIDER, f"block {number} for {guess.path} has no ======= line between SEARCH and REPLACE",
                path=guess.path, block=number, quote=source))
            return end + 1
        readings = tuple((_text(lines[i + 1 : d]), _text(lines[d + 1 : end])) for d in dividers)
        block = EditBlock(guess.path, readings[0][0], readings[0][1], index=number, line=i + 1, source=source,
                          alternatives=readings[1:])
        self.add(block)
        return end + 1

    def add(self, block: EditBlock) -> None:
        for earlier in self.blocks:
            if (earlier.path, earlier.readings, earlier.whole) == (block.path, block.readings, block.whole):
                self.notes.append(f"block {block.index} repeats block {earlier.index} exactly: applied once")
                return
        self.blocks.append(block)

    def find_close(self, i: int, fence: _Fence) -> tuple[int | None, bool]:
        """The line that closes the fence opened at `i` (None: none), and whether a SEARCH line comes first."""
        depth = 0
        for k in range(i + 1, len(self.lines)):
            line = self.lines[k]
            if is_search(line):
                return None, True
            inner = _fence(line)
            if inner is None or inner.char != fence.char or inner.length < fence.length:
                continue
            if inner.info:
                depth += 1
            elif depth:
                depth -= 1
            else:
                return k, False
        return None, False

    def line_above(self, i: int) -> str | None:
        j = i - 1
        while j >= 0 and not self.lines[j].strip() and i - j < 3:
            j -= 1
        return self.lines[j] if j >= 0 and self.lines[j].strip() else None

    def fence_path(self, i: int, fence: _Fence) -> _Guess | None:
        if fence.info and (guess := self.paths.from_info(fence.info)) is not None:
            return guess
        above = self.line_above(i)
        if above is None or _is_marker(above) or _fence(above) is not None:
            return None
        return self.paths.from_line(above, prose=False)

    def fenced_file(self, i: int, fence: _Fence, guess: _Guess) -> int:
        close, _ = self.find_close(i, fence)
        self.count += 1
        number, stop = self.count, close if close is not None else len(self.lines)
        source = "\n".join(self.lines[i : stop + 1]).rstrip("\n")
        if self.refuse_path(guess, number, i + 1, source):
            return stop + 1
        assert guess.path is not None
        if close is None:
            self.problems.append(EditProblem(
                UNFINISHED, f"the fenced content of {guess.path} has no closing fence: the answer was probably cut "
                "at the token limit", path=guess.path, block=number, quote=source[:400]))
            return stop
        if guess.how:
            self.notes.append(f"block {number}: {guess.how}")
        self.last = guess
        self.add(EditBlock(guess.path, "", _text(self.lines[i + 1 : close]), index=number, line=i + 1,
                           source=source, whole=True))
        return close + 1

    def read(self) -> ParsedAnswer:
        lines, i, open_fence, after_replace = self.lines, 0, None, False
        while i < len(lines):
            line = lines[i]
            if is_search(line):
                i = self.edit_block(i)
                after_replace = i > 0 and is_replace(lines[i - 1])
                continue
            fence = _fence(line)
            if fence is None:
                after_replace = after_replace and not line.strip()
                i += 1
                continue
            if after_replace and not fence.info:  # the block's closing fence, or a stray one
                open_fence, after_replace, i = None, False, i + 1
                continue
            guess = self.fence_path(i, fence)
            if open_fence is not None and open_fence.closed_by(fence) and (guess is None or guess.path is None):
                open_fence, i = None, i + 1
                continue
            close, holds_blocks = self.find_close(i, fence)
            if holds_blocks:
                open_fence, i = fence, i + 1
                continue
            if guess is not None:
                i = self.fenced_file(i, fence, guess)
                continue
            self.pathless.append((i, close if close is not None else len(lines)))
            i = (close if close is not None else len(lines)) + 1
        self.fallback()
        if not self.blocks and not self.problems:
            self.problems.append(EditProblem(
                NO_BLOCKS, "the answer holds no edit block: give each change as the file's path on its own line, then "
                "a fenced <<<<<<< SEARCH / ======= / >>>>>>> REPLACE block"))
        return ParsedAnswer(tuple(self.blocks), tuple(self.problems), tuple(self.notes))

    def fallback(self) -> None:
        """One fenced block with no path, one requested output, nothing else in the answer: that output whole."""
        if self.saw_search or self.blocks or self.problems or len(self.pathless) != 1 or len(self.paths.outputs) != 1:
            return
        start, close = self.pathless[0]
        if close >= len(self.lines):
            return
        self.count += 1
        path = self.paths.outputs[0]
        self.notes.append(f"the one fenced block names no file: read as the whole of {path}, the only requested output")
        self.blocks.append(EditBlock(path, "", _text(self.lines[start + 1 : close]), index=self.count,
                                     line=start + 1, source="\n".join(self.lines[start : close + 1]), whole=True))


def parse_edits(text: str, *, outputs: Sequence[str]) -> ParsedAnswer:
    """The edit blocks of an answer, in order, with what stops them from being used (`problems`, each with a
    message for the model) and what was tolerated (`notes`). `outputs`: the requested paths, in the engine's
    spelling (engine.delegation.paths.canonical_relative)."""
    return _Reader(text, outputs).read()
