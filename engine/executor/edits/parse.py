"""Reading an answer: edit blocks (`parse_edits`) or whole files in fences (`parse_whole`). Pure: text in, blocks and
problems out; the files are not looked at (apply.py does).

The edit form (docs/edit-blocks.md): the path on its own line, a fence, `<<<<<<< SEARCH`, the exact
old lines, `=======`, the new lines, `>>>>>>> REPLACE`, the closing fence; several blocks per file and per fence. A
new file is its whole content in a plain fenced block right after its path (what the prompt asks), or an empty
SEARCH. The `whole` form: every file as its path on its own line and one fenced block with the complete content.

What real models do and how it is read:
- Markers count only as whole lines: 5 to 9 `<`, `=` or `>` (7 asked for), the words case-insensitive, trailing
  blanks allowed. Every `=======`-like line between SEARCH and REPLACE is a possible divider; the block keeps every
  reading and the applier picks the one whose SEARCH matches (an `.rst` underline inside the content stays content);
  a block with more than MAX_DIVIDERS such lines (a runaway answer) is refused with a message.
- Fences (fences.py, the one fence reader) are only wrappers around edit blocks: the block is read by its markers,
  so a fence inside the content (Markdown) never ends a block, and a missing or extra fence changes nothing. A plain
  fenced file ends at a bare fence of its own character at least as long as its opening one; a fence with an info
  string inside it opens a nested one.
- The path (answer_paths.py): the nearest non-blank line above the block (fence lines passed over), alone on its
  line, possibly in bold or backticks, after `#`, `//`, `--`, a list bullet, `File:`/`Path:`, with a trailing colon,
  `./` or `\\` spellings; or a token of the fence's info string (```` ```python src/a.py ````); or, in a prose line
  just above the block, the one requested path it names; or (whole files) a leading comment inside the block that
  names a requested output. A block with no path of its own belongs to the file of the block before it; with no
  block before it and one requested output, to that output (noted).
- A path that is not a requested output (compared case-sensitively after normalising the spelling) refuses the block
  and every following block without a path of its own; the message names the allowed paths.
- A block with no `>>>>>>> REPLACE` line (the answer cut at the token limit, or the next block started) is an error
  that says so; so is a block with no `=======`, and a fenced file with no closing fence. A block that repeats the
  block just before it exactly is applied once (noted); any other repeat applies in its turn, since blocks apply in
  sequence (x->y, y->x, x->y gives y).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.executor.edits.answer_paths import PathGuess, PathReader, normalize_path
from engine.executor.edits.fences import AnswerLines, Fence
from engine.executor.edits.model import (
    NO_BLOCKS,
    NO_DIVIDER,
    NO_PATH,
    TOO_MANY_DIVIDERS,
    UNFINISHED,
    UNKNOWN_PATH,
    EditBlock,
    EditProblem,
    ParsedAnswer,
)

__all__ = [
    "MAX_DIVIDERS",
    "fenced_bodies",
    "is_divider",
    "is_replace",
    "is_search",
    "normalize_path",
    "parse_edits",
    "parse_whole",
]

MAX_DIVIDERS = 64
"""`=======`-like lines one block may hold (each is a way of reading it); a real block has one, an `.rst` file a few."""
MAX_READING_CHARS = 16_000_000
"""The text all readings of one block may hold together (readings x block size), so a runaway block stays small."""

_SEARCH = re.compile(r"<{5,9} ?SEARCH[ \t]*", re.IGNORECASE)
_DIVIDER = re.compile(r"={5,9}[ \t]*")
_REPLACE = re.compile(r">{5,9} ?REPLACE[ \t]*", re.IGNORECASE)
_COMMENT = re.compile(r"\s*(?:#|//|--|;|/\*|<!--)")


def is_search(line: str) -> bool:
    return _SEARCH.fullmatch(line) is not None


def is_divider(line: str) -> bool:
    return _DIVIDER.fullmatch(line) is not None


def is_replace(line: str) -> bool:
    return _REPLACE.fullmatch(line) is not None


def _is_marker(line: str) -> bool:
    return is_search(line) or is_divider(line) or is_replace(line)


def _text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


class _Reader:
    def __init__(self, text: str, outputs: Sequence[str], *, whole: bool = False, ended: bool = False) -> None:
        self.whole = whole
        self.ended = ended
        """The answer ended on its own (not at the token limit): a whole file left open at its end is complete."""
        """The `whole` form: every fenced block is a file; SEARCH lines are plain text."""
        self.text = AnswerLines(text, stop=None if whole else is_search)
        self.lines = self.text.lines
        self.paths = PathReader(outputs)
        self.blocks: list[EditBlock] = []
        self.problems: list[EditProblem] = []
        self.notes: list[str] = []
        self.last: PathGuess | None = None
        self.count = 0
        self.pathless: list[tuple[int, int]] = []
        self.saw_search = False

    def _allowed(self) -> str:
        return ", ".join(self.paths.outputs)

    def path_above(self, i: int) -> PathGuess | None:
        j, looked = i - 1, 0
        while j >= 0 and looked < 5:
            line = self.lines[j]
            looked += 1
            if not line.strip():
                j -= 1
                continue
            if _is_marker(line):
                return None
            fence = self.text.fence(j)
            if fence is None:
                return self.paths.from_line(line, prose=True)
            if fence.info and (guess := self.paths.from_info(fence.info)) is not None:
                return guess
            j -= 1
        return None

    def block_path(self, i: int, number: int) -> PathGuess | None:
        guess = self.path_above(i)
        if guess is None and self.last is not None:
            return self.last
        if guess is None and len(self.paths.outputs) == 1:
            self.notes.append(f"block {number} names no file: it was read as one for {self.paths.outputs[0]}, "
                              "the only requested output")
            return PathGuess(path=self.paths.outputs[0])
        if guess is not None and guess.path is not None and guess.how:
            self.notes.append(f"block {number}: {guess.how}")
        return guess

    def refuse_path(self, guess: PathGuess | None, number: int, line: int, source: str) -> bool:
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
        if len(dividers) > 1 and (len(dividers) > MAX_DIVIDERS or
                                  len(dividers) * sum(map(len, lines[i:end])) > MAX_READING_CHARS):
            self.problems.append(EditProblem(
                TOO_MANY_DIVIDERS, f"block {number} for {guess.path} has {len(dividers)} lines like ======= between "
                "SEARCH and REPLACE: write exactly one ======= line per block, and smaller blocks",
                path=guess.path, block=number, quote=source[:400]))
            return end + 1
        readings = tuple((_text(lines[i + 1 : d]), _text(lines[d + 1 : end])) for d in dividers)
        block = EditBlock(guess.path, readings[0][0], readings[0][1], index=number, line=i + 1, source=source,
                          alternatives=readings[1:])
        self.add(block)
        return end + 1

    def add(self, block: EditBlock) -> None:
        """Blocks apply in sequence, so only a repeat of the block just before is a stutter (applied once); an earlier
        block repeated after another one (x->y, y->x, x->y) applies in its turn."""
        earlier = self.blocks[-1] if self.blocks else None
        if earlier is not None and (earlier.path, earlier.readings, earlier.whole) == (
                block.path, block.readings, block.whole):
            self.notes.append(f"block {block.index} repeats block {earlier.index} exactly: applied once")
            return
        self.blocks.append(block)

    def find_close(self, i: int, fence: Fence) -> tuple[int | None, bool]:
        """The line that closes the fence opened at `i` (None: none), and whether a SEARCH line comes first."""
        close = self.text.find_close(i, fence)
        if self.text.spent and not any("fence lines" in n for n in self.notes):
            self.notes.append("the answer holds too many fence lines to pair them all: later fence lines were read "
                              "as plain text")
        return close

    def line_above(self, i: int) -> int | None:
        j = i - 1
        while j >= 0 and not self.lines[j].strip() and i - j < 3:
            j -= 1
        return j if j >= 0 and self.lines[j].strip() else None

    def fence_path(self, i: int, fence: Fence) -> PathGuess | None:
        if fence.info and (guess := self.paths.from_info(fence.info)) is not None:
            return guess
        above = self.line_above(i)
        plain = above is not None and not _is_marker(self.lines[above]) and self.text.fence(above) is None
        if plain and above is not None and (guess := self.paths.from_line(self.lines[above], prose=self.whole)):
            return guess
        if self.whole and i + 1 < len(self.lines) and _COMMENT.match(first := self.lines[i + 1]):
            guess = self.paths.from_line(first, prose=False)
            if guess is not None and guess.path is not None:
                return PathGuess(path=guess.path, how=f"took the path from the comment {first.strip()!r}")
        return None

    def fenced_file(self, i: int, fence: Fence, guess: PathGuess) -> int:
        close, _ = self.find_close(i, fence)
        self.count += 1
        number, stop = self.count, close if close is not None else len(self.lines)
        source = "\n".join(self.lines[i : stop + 1]).rstrip("\n")
        if self.refuse_path(guess, number, i + 1, source):
            return stop + 1
        assert guess.path is not None
        if close is None and self.whole and self.ended:
            return self.open_at_end(i, guess.path, number)
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
            if not self.whole and self.text.stops[i]:
                i = self.edit_block(i)
                after_replace = i > 0 and is_replace(lines[i - 1])
                continue
            fence = self.text.fence(i)
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
        self.fallback_whole() if self.whole else self.fallback()
        if not self.blocks and not self.problems:
            self.problems.append(EditProblem(NO_BLOCKS, (
                "the answer holds no fenced file: give each file as its path on its own line, then its complete "
                "content in one fenced block") if self.whole else (
                "the answer holds no edit block: give each change as the file's path on its own line, then "
                "a fenced <<<<<<< SEARCH / ======= / >>>>>>> REPLACE block")))
        return ParsedAnswer(tuple(self.blocks), tuple(self.problems), tuple(self.notes))

    def open_at_end(self, i: int, path: str, number: int) -> int:
        """A whole file whose block the answer left open at its end, when the model stopped on its own: small
        models often end the answer instead of writing the closing fence. Trailing blank lines are dropped."""
        end = len(self.lines)
        while end > i + 1 and not self.lines[end - 1].strip():
            end -= 1
        self.notes.append(f"the fenced content of {path} has no closing fence; the answer ended there, so it was "
                          "read to its end")
        self.last = PathGuess(path=path)
        self.add(EditBlock(path, "", _text(self.lines[i + 1 : end]), index=number, line=i + 1,
                           source="\n".join(self.lines[i:end]), whole=True))
        return len(self.lines)

    def fallback_whole(self) -> None:
        """Whole files, one requested output that no block named: the first fenced block is that file (a model often
        adds a usage example after it); cut off, it is an unfinished file."""
        if self.blocks or self.problems or not self.pathless or len(self.paths.outputs) != 1:
            return
        start, close = self.pathless[0]
        path = self.paths.outputs[0]
        if close >= len(self.lines) and self.ended:
            self.count += 1
            self.open_at_end(start, path, self.count)
            return
        if close >= len(self.lines):
            self.problems.append(EditProblem(
                UNFINISHED, f"the fenced content of {path} has no closing fence: the answer was probably cut at the "
                "token limit", path=path, block=1, quote="\n".join(self.lines[start:])[:400]))
            return
        self.count += 1
        self.notes.append(f"the first fenced block names no file: read as the whole of {path}, the only requested "
                          "output" + (f" ({len(self.pathless) - 1} later block(s) left out)" if len(self.pathless) > 1
                                      else ""))
        self.blocks.append(EditBlock(path, "", _text(self.lines[start + 1 : close]), index=self.count,
                                     line=start + 1, source="\n".join(self.lines[start : close + 1]), whole=True))

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


def parse_whole(text: str, *, outputs: Sequence[str], ended: bool = False) -> ParsedAnswer:
    """The `whole` form (and the JSON form's fallback): every fenced block that names a requested output is that
    file's complete new content (`EditBlock.whole`; SEARCH lines are plain text here). With one requested output, the
    first fenced block stands for it when none names it. Prose around the blocks is ignored. A block left open at the
    end of the answer is unfinished (cut at the token limit), unless `ended`: the model stopped on its own there
    (the run knows: a generation cut at the limit is refused before it is read), so the block runs to the end."""
    return _Reader(text, outputs, whole=True, ended=ended).read()


def fenced_bodies(text: str) -> list[tuple[str, str]]:
    """(info string, content) of each top-level fenced block of an answer, in order; a block cut off runs to the end.
    The JSON form looks for its object in these."""
    lines, i = AnswerLines(text), 0
    found: list[tuple[str, str]] = []
    while i < len(lines):
        fence = lines.fence(i)
        if fence is None:
            i += 1
            continue
        close, gave_up = lines.find_close(i, fence)
        if gave_up:
            i += 1
            continue
        end = close if close is not None else len(lines)
        found.append((fence.info, _text(lines.lines[i + 1 : end])))
        i = end + 1
    return found
