"""Applying edit blocks to the files as they are. Pure: bytes in, bytes (or the problems) out.

The rules (docs/edit-blocks.md, "The form" and "Decisions"), as applied here:
- Blocks apply in the order written, each to the file as the blocks before it in the same answer left it. A new
  attempt starts again from the run's base (the bytes journaled when the prompt was packed): see feedback.py.
- A SEARCH must match exactly once. First exactly, line by line; then ignoring trailing whitespace; then with one
  consistent indentation shift over all its non-blank lines (the REPLACE lines are shifted the same way). A tolerated
  match is reported in the notes. No match, several matches (their line numbers given), or an empty SEARCH on a file
  that exists and is not empty is a problem; a non-empty SEARCH on a file that does not exist is one too.
- A file that does not exist is created by an empty SEARCH (or a plain fenced block after its path); a file that
  exists but is empty (0 bytes) may be filled the same way.
- When a block holds several `=======`-like lines (an `.rst` underline in the content), the reading whose SEARCH
  matches exactly once wins; among several such readings, the one with the longest SEARCH (a SEARCH that stops at an
  underline also matches the title above it, so the longer reading is the one the model wrote).
- Bytes: an output that is not UTF-8 is refused before any block is tried; a BOM, each untouched line's ending, and
  the presence or absence of the final newline are kept; new lines get the file's usual ending (CRLF or LF).
- All or nothing: any problem in any block of any file, and no file gets content (`contents` is empty).
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.executor.edits.model import (
    EMPTY_SEARCH_EXISTING,
    MISSING_FILE,
    NO_MATCH,
    SEARCH_ON_ABSENT,
    SEVERAL_MATCHES,
    UNKNOWN_PATH,
    WHOLE_FILE_EXISTING,
    EditBlock,
    EditProblem,
    ParsedAnswer,
)
from engine.executor.edits.text import FileText, check_utf8

__all__ = ["AnswerApplied", "Applied", "apply_answer", "apply_edits", "closest_lines"]

CLOSEST_MIN_RATIO = 0.2
"""Below this similarity, no lines are quoted as "closest" (they would only mislead)."""
CLOSEST_SHORTLIST = 8
"""How many windows, ranked by shared tokens, are compared character by character."""
CLOSEST_ROWS = 48
"""At most this many SEARCH lines rank the windows (evenly spaced, first and last included)."""
CHAR_DIFF_LIMIT = 250_000
"""Above this product of two stretches' lengths, their shared characters are counted without aligning them."""
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class Applied:
    """One file after the blocks for it: `content` is the new bytes (the base when nothing changed), or None when a
    block failed."""

    path: str
    content: bytes | None
    problems: tuple[EditProblem, ...] = ()
    notes: tuple[str, ...] = ()
    created: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class AnswerApplied:
    """A whole answer against the requested outputs: `contents` maps each output the answer changes or creates to its
    new bytes, and is empty as soon as there is any problem (nothing of the attempt may be written)."""

    contents: Mapping[str, bytes]
    problems: tuple[EditProblem, ...] = ()
    notes: tuple[str, ...] = ()
    files: tuple[Applied, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def _lines(text: str) -> list[str]:
    return text.split("\n")[:-1] if text else []


@dataclass(frozen=True)
class _Match:
    starts: tuple[int, ...]
    how: str = "exact"
    """exact, trailing (trailing whitespace ignored), or indent (plus a consistent indentation shift)."""
    add: str = ""
    remove: str = ""


def _equal(window: Sequence[str], search: Sequence[str], how: str) -> bool:
    if how == "exact":
        return list(window) == list(search)
    return all(a.rstrip() == b.rstrip() for a, b in zip(window, search, strict=True))


def _shift(window: Sequence[str], search: Sequence[str]) -> tuple[str, str] | None:
    """(add, remove): the one indentation change that turns every non-blank SEARCH line into the file's line."""
    found: tuple[str, str] | None = None
    for line, wanted in zip(window, search, strict=True):
        line, wanted = line.rstrip(), wanted.rstrip()
        if not line and not wanted:
            continue
        body = line.lstrip()
        if not line or not wanted or body != wanted.lstrip():
            return None
        have, written = line[: len(line) - len(body)], wanted[: len(wanted) - len(body)]
        if have.endswith(written):
            delta = (have[: len(have) - len(written)], "")
        elif written.endswith(have):
            delta = ("", written[: len(written) - len(have)])
        else:
            return None
        if found is not None and delta != found:
            return None
        found = delta
    return found if found is not None and found != ("", "") else None


def _find(lines: Sequence[str], search: Sequence[str]) -> _Match:
    k = len(search)
    spans = range(len(lines) - k + 1)
    for how in ("exact", "trailing"):
        first = search[0] if how == "exact" else search[0].rstrip()
        starts = tuple(i for i in spans if (lines[i] if how == "exact" else lines[i].rstrip()) == first
                       and _equal(lines[i : i + k], search, how))
        if starts:
            return _Match(starts, how)
    shifted = [(i, s) for i in spans if (s := _shift(lines[i : i + k], search)) is not None]
    if len(shifted) == 1:
        return _Match((shifted[0][0],), "indent", *shifted[0][1])
    return _Match(tuple(i for i, _ in shifted), "indent")


def _shifted(lines: Sequence[str], match: _Match) -> list[str]:
    out = []
    for line in lines:
        if not line.strip():
            out.append(line)
        elif match.add:
            out.append(match.add + line)
        elif match.remove:
            out.append(line[len(match.remove) :] if line.startswith(match.remove) else line.lstrip())
        else:
            out.append(line)
    return out


def _spaces(text: str) -> str:
    if text.strip(" ") == "":
        return f"{len(text)} space{'s' if len(text) != 1 else ''}"
    if text.strip("\t") == "":
        return f"{len(text)} tab{'s' if len(text) != 1 else ''}"
    return repr(text)


def _tokens(line: str) -> frozenset[str]:
    return frozenset(_TOKEN.findall(line))


def _alike(a: frozenset[str], b: frozenset[str]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def closest_lines(text: str | Sequence[str], search: str | Sequence[str]) -> tuple[tuple[int, str], ...]:
    """The region of `text` most like `search` (as many lines), as (1-based line number, line) pairs, compared
    without indentation; () when nothing is at least CLOSEST_MIN_RATIO alike. Windows are ranked by the tokens their
    lines share with the SEARCH lines, then the best few by difflib's ratio (fast on long files)."""
    lines, wanted = _as_lines(text), _as_lines(search)
    if not lines or not wanted:
        return ()
    k = min(len(wanted), len(lines))
    have, want = [_tokens(x) for x in lines], [_tokens(x) for x in wanted[:k]]
    # Ranking every window on every line is (windows x k) set operations: seconds for a 750-line SEARCH. Evenly
    # spaced rows rank them nearly as well; the shortlist is then compared in full.
    rows = range(k) if k <= CLOSEST_ROWS else sorted({j * (k - 1) // (CLOSEST_ROWS - 1) for j in range(CLOSEST_ROWS)})
    scores = [(sum(_alike(have[i + j], want[j]) for j in rows), -i) for i in range(len(lines) - k + 1)]
    shortlist = [-i for _, i in heapq.nlargest(CLOSEST_SHORTLIST, scores)]
    stripped = [x.strip() for x in wanted]
    candidates = [(rank, i, _Similarity([x.strip() for x in lines[i : i + k]], stripped))
                  for rank, i in enumerate(shortlist)]
    bounds = sorted(((s.bound(), -rank, i, s) for rank, i, s in candidates), key=lambda c: c[:2], reverse=True)
    best, best_key, best_at = CLOSEST_MIN_RATIO, (CLOSEST_MIN_RATIO, 0), None
    for bound, neg_rank, i, similarity in bounds:
        if bound <= best:
            break  # sorted by bound: no later window can beat it
        key = (similarity.ratio(), neg_rank)  # on a tie, the window ranked first by shared tokens, as before
        if key[0] > best_key[0] or (key[0] == best_key[0] and best_at is not None and key > best_key):
            best, best_key, best_at = key[0], key, i
    if best_at is None:
        return ()
    return tuple((n + 1, lines[n]) for n in range(best_at, best_at + k))


def _matched_chars(left: str, right: str, *, bound: bool = False) -> int:
    """How many characters of `left` and `right` difflib pairs up; with `bound`, or where comparing them in full
    would cost more than CHAR_DIFF_LIMIT steps, an upper bound (the shared characters, in any order)."""
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    if not bound and len(left) * len(right) <= CHAR_DIFF_LIMIT:
        return sum(block.size for block in matcher.get_matching_blocks())
    return round(matcher.quick_ratio() * (len(left) + len(right)) / 2)


class _Similarity:
    """difflib's ratio of a window and the SEARCH (2 * matched / all characters, lines joined by newlines), found
    line by line: equal lines count whole and only the stretches that differ are compared character by character.
    A character diff of whole windows is quadratic in their length: minutes for a 400-line SEARCH that misses by a
    word. `bound()` is a cheap upper bound of `ratio()`, so windows that cannot win are not compared in full."""

    def __init__(self, window: Sequence[str], wanted: Sequence[str]) -> None:
        self.window, self.wanted = window, wanted
        self.total = sum(len(x) + 1 for x in window) + sum(len(x) + 1 for x in wanted)
        self.opcodes = difflib.SequenceMatcher(None, list(window), list(wanted), autojunk=False).get_opcodes()

    def ratio(self, *, bound: bool = False) -> float:
        window, wanted = self.window, self.wanted
        matched = 0
        for tag, i1, i2, j1, j2 in self.opcodes:
            if tag == "equal":
                matched += sum(len(x) + 1 for x in window[i1:i2])
            elif tag == "replace" and i2 - i1 == j2 - j1:  # line against line: a rename on every line stays cheap
                matched += sum(_matched_chars(a, b, bound=bound)
                               for a, b in zip(window[i1:i2], wanted[j1:j2], strict=True))
            elif tag == "replace":
                matched += _matched_chars("\n".join(window[i1:i2]), "\n".join(wanted[j1:j2]), bound=bound)
        return 2 * matched / self.total if self.total else 1.0

    def bound(self) -> float:
        return self.ratio(bound=True)


def _as_lines(value: str | Sequence[str]) -> list[str]:
    if not isinstance(value, str):
        return list(value)
    lines = value.replace("\r\n", "\n").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def _at(starts: Sequence[int], k: int) -> str:
    return ", ".join(f"{s + 1}" if k == 1 else f"{s + 1}-{s + k}" for s in starts)


class _File:
    def __init__(self, base: bytes | None, path: str) -> None:
        self.path = path
        self.exists = base is not None
        text = FileText.from_bytes(base) if base is not None else FileText((), ())
        self.lines, self.endings, self.bom = list(text.lines), list(text.endings), text.bom
        self.newline = text.newline if text.lines else "\n"
        self.final_newline = text.final_newline
        self.base_empty = base == b""
        self.created = False
        self.applied = 0
        self.notes: list[str] = []
        self.problems: list[EditProblem] = []

    def problem(self, kind: str, block: EditBlock, message: str, search: str = "") -> None:
        closest = closest_lines(self.lines, _lines(search)) if search else ()
        self.problems.append(EditProblem(kind, message, path=self.path, block=block.index, quote=block.source,
                                         closest=closest))

    def splice(self, start: int, count: int, new: Sequence[str]) -> None:
        self.lines[start : start + count] = list(new)
        self.endings[start : start + count] = [self.newline] * len(new)
        self.applied += 1

    def create(self, block: EditBlock, replace: str) -> None:
        what = "created" if not self.exists else "filled (it was empty)"
        self.splice(0, len(self.lines), _lines(replace))
        self.exists, self.created = True, self.created or not self.exists
        self.final_newline = True
        if block.whole:
            self.notes.append(f"block {block.index}: {self.path} {what} from a plain fenced block")

    def apply(self, block: EditBlock) -> None:
        name = f"block {block.index} for {self.path}"
        if not self.exists:
            if block.search == "":
                self.create(block, block.replace)
            else:
                self.problem(SEARCH_ON_ABSENT, block, f"{name}: {self.path} does not exist, so its SEARCH must be "
                             "empty and its REPLACE must hold the whole new file")
            return
        empty_file = not self.lines and (self.base_empty or self.created)
        if block.whole:
            if empty_file:
                self.create(block, block.replace)
            else:
                self.problem(WHOLE_FILE_EXISTING, block, f"{name}: {self.path} exists, so change it with "
                             "<<<<<<< SEARCH / ======= / >>>>>>> REPLACE blocks, not by writing it whole")
            return
        found = [(s, r, _find(self.lines, _lines(s))) for s, r in block.readings if s]
        unique = [f for f in found if len(f[2].starts) == 1]
        if unique:
            search, replace, match = max(unique, key=lambda f: len(f[0]))
            if len(block.readings) > 1:
                self.notes.append(f"{name}: the ======= line after SEARCH line {len(_lines(search))} was read as "
                                  "the divider; the other ======= lines are content")
            self.replace(name, search, replace, match)
            return
        if not found:
            if empty_file:
                self.create(block, block.replace)
            else:
                self.problem(EMPTY_SEARCH_EXISTING, block, f"{name}: the SEARCH is empty, but {self.path} exists; "
                             "copy the lines to change into SEARCH (an empty SEARCH only creates a new file)")
            return
        several = [f for f in found if len(f[2].starts) > 1]
        later = " as your earlier blocks for it left it" if self.applied else ""
        if several:
            search, _, match = several[0]
            k = len(_lines(search))
            self.problem(SEVERAL_MATCHES, block, f"{name}: the SEARCH text matches {len(match.starts)} places of the "
                         f"file{later} (lines {_at(match.starts, k)}); add the lines around the change so it "
                         "matches only one")
            return
        search = found[0][0]
        self.problem(NO_MATCH, block, f"{name}: the SEARCH text matches no lines of the file{later}; SEARCH must "
                     "copy the file's lines exactly", search=search)

    def replace(self, name: str, search: str, replace: str, match: _Match) -> None:
        start, k = match.starts[0], len(_lines(search))
        new = _lines(replace)
        if match.how == "trailing":
            self.notes.append(f"{name}: matched lines {_at([start], k)} with trailing whitespace ignored")
        elif match.how == "indent":
            moved = f"added {_spaces(match.add)}" if match.add else f"removed {_spaces(match.remove)}"
            self.notes.append(f"{name}: matched lines {_at([start], k)} once their indentation was shifted "
                              f"({moved}); the REPLACE lines were shifted the same way")
            new = _shifted(new, match)
        if search == replace:
            self.notes.append(f"{name}: SEARCH and REPLACE are the same (nothing to change)")
        self.splice(start, k, new)

    def content(self) -> bytes:
        endings = [e or self.newline for e in self.endings]
        if endings and not self.final_newline:
            endings[-1] = ""
        return FileText(tuple(self.lines), tuple(endings), self.bom).encode()


def apply_edits(base: bytes | None, blocks: Sequence[EditBlock], *, path: str) -> Applied:
    """Apply `blocks` (the caller picks those for `path`; `path` names the file in messages) to its `base` bytes
    (None: the file does not exist), in order. Every block is tried, so that all problems are reported at once; any
    problem and `content` is None."""
    if base is not None and (refused := check_utf8(base, path=path)) is not None:
        return Applied(path, None, (refused,))
    state = _File(base, path)
    for block in blocks:
        state.apply(block)
    if state.problems:
        return Applied(path, None, tuple(state.problems), tuple(state.notes), created=state.created)
    content = state.content() if state.exists else None
    return Applied(path, content, (), tuple(state.notes), created=state.created)


def apply_answer(parsed: ParsedAnswer, files: Mapping[str, bytes | None]) -> AnswerApplied:
    """A parsed answer against every requested output (`files`: path -> its base bytes, None when absent). An
    output with no block stays as it is, unless it does not exist (then it is missing). All or nothing."""
    problems = list(parsed.problems)
    notes = list(parsed.notes)
    results: list[Applied] = []
    for block in parsed.blocks:
        if block.path not in files:
            problems.append(EditProblem(UNKNOWN_PATH, f"block {block.index} is for {block.path}, which is not a "
                                        f"file you may write; write only: {', '.join(files)}", path=block.path,
                                        block=block.index, quote=block.source))
    for path, base in files.items():
        blocks = [b for b in parsed.blocks if b.path == path]
        if not blocks:
            if base is None and not any(p.path == path for p in problems):
                problems.append(EditProblem(MISSING_FILE, f"{path} does not exist and no block creates it: give it "
                                            "as an empty SEARCH with the whole file in REPLACE", path=path))
            continue
        applied = apply_edits(base, blocks, path=path)
        results.append(applied)
        problems.extend(applied.problems)
        notes.extend(applied.notes)
    problems.sort(key=lambda p: (p.block is None, p.block or 0))
    contents = {} if problems else {
        a.path: a.content for a in results if a.content is not None and a.content != files[a.path]}
    return AnswerApplied(contents, tuple(problems), tuple(notes), tuple(results))
