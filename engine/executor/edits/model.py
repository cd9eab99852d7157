"""The values the edit-block answer form passes around: a block as the model wrote it, a problem fit to quote back to
the model, and what parsing an answer found. Plain frozen data; no IO."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EMPTY_SEARCH_EXISTING",
    "MISSING_FILE",
    "NOT_UTF8",
    "NO_BLOCKS",
    "NO_DIVIDER",
    "NO_MATCH",
    "NO_PATH",
    "PROBLEM_KINDS",
    "SEARCH_ON_ABSENT",
    "SEVERAL_MATCHES",
    "TOO_MANY_DIVIDERS",
    "UNFINISHED",
    "UNKNOWN_PATH",
    "WHOLE_FILE_EXISTING",
    "EditBlock",
    "EditProblem",
    "ParsedAnswer",
]

# Found while parsing (the answer's shape):
NO_BLOCKS = "no_blocks"
"""The answer holds no edit block and no fenced file."""
UNKNOWN_PATH = "unknown_path"
"""A block names a path that is not among the requested outputs."""
NO_PATH = "no_path"
"""A block with no path before it, while several outputs were requested and no earlier block gives one."""
UNFINISHED = "unfinished"
"""A block with no `>>>>>>> REPLACE` line (cut at the token limit, or the next block started first), or a fenced
file with no closing fence."""
NO_DIVIDER = "no_divider"
"""A block with SEARCH and REPLACE markers but no `=======` line between them."""
TOO_MANY_DIVIDERS = "too_many_dividers"
"""A block with more `=======`-like lines than it can be read with (parse.MAX_DIVIDERS): a runaway answer."""
# Found while applying (the files as they are):
NOT_UTF8 = "not_utf8"
"""An output file that is not valid UTF-8: refused before any block is tried."""
NO_MATCH = "no_match"
SEVERAL_MATCHES = "several_matches"
EMPTY_SEARCH_EXISTING = "empty_search_existing"
"""An empty SEARCH (create the file) on a file that exists and is not empty."""
WHOLE_FILE_EXISTING = "whole_file_existing"
"""A plain fenced file (no markers) for a file that exists: existing files change by edit blocks only."""
SEARCH_ON_ABSENT = "search_on_absent"
"""A non-empty SEARCH for a file that does not exist."""
MISSING_FILE = "missing_file"
"""A requested output that does not exist and that no block creates."""

PROBLEM_KINDS = frozenset({
    NO_BLOCKS, UNKNOWN_PATH, NO_PATH, UNFINISHED, NO_DIVIDER, TOO_MANY_DIVIDERS, NOT_UTF8, NO_MATCH, SEVERAL_MATCHES,
    EMPTY_SEARCH_EXISTING, WHOLE_FILE_EXISTING, SEARCH_ON_ABSENT, MISSING_FILE,
})


@dataclass(frozen=True)
class EditBlock:
    """One change the model asked for. `search` and `replace` are text with `\\n` line ends (every line ends with
    one; `""` is no line at all): the answer's own line endings are dropped, the file's are used when applying.

    `alternatives` lists the other ways of reading the block when more than one line between the markers could be
    the `=======` divider (a reStructuredText underline, say): the applier keeps the reading whose SEARCH matches
    (see apply.py). `whole` marks a new file given as a plain fenced block after its path (no markers)."""

    path: str
    search: str
    replace: str
    index: int
    """1-based number of the block in the answer (as quoted back to the model)."""
    line: int
    """1-based line of the answer where the block starts (its `<<<<<<< SEARCH` line, or its opening fence)."""
    source: str = ""
    """The block as the model wrote it, markers included, for quoting in a retry."""
    alternatives: tuple[tuple[str, str], ...] = ()
    whole: bool = False

    @property
    def readings(self) -> tuple[tuple[str, str], ...]:
        """Every (search, replace) reading, the first divider's first."""
        return ((self.search, self.replace), *self.alternatives)


@dataclass(frozen=True)
class EditProblem:
    """Something that stops an answer from being applied, with a message written for the model (quoted in the
    retry) and, for a SEARCH that matched no line, the closest real lines of the file."""

    kind: str
    message: str
    path: str | None = None
    block: int | None = None
    """1-based block number in the answer, when the problem belongs to one block."""
    quote: str = ""
    """The failing block as the model wrote it."""
    closest: tuple[tuple[int, str], ...] = ()
    """(1-based line number, line) of the region of the file most like the SEARCH."""


@dataclass(frozen=True)
class ParsedAnswer:
    blocks: tuple[EditBlock, ...]
    problems: tuple[EditProblem, ...] = ()
    notes: tuple[str, ...] = ()
    """What was tolerated and how it was read (a path found in bold, a duplicate block dropped, ...)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def paths(self) -> tuple[str, ...]:
        """The paths the blocks touch, in the order of their first block."""
        return tuple(dict.fromkeys(b.path for b in self.blocks))
