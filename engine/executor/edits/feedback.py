"""What the model is told about the edit-block form: the instructions (with one example), and the retry message for
an attempt whose blocks could not be applied. Pure text.

Which text the next blocks apply to: **the base**, always. Every attempt's blocks are applied to the bytes each output
had when the run packed its prompt (journaled as the base), never to the previous attempt's result. Why:
- the base is already in front of the model, byte for byte, in the first user message that every attempt repeats
  (the prompt cache is reused; a retry adds no copy of a whole file);
- an answer that failed to apply wrote nothing, and an answer that failed verification did write: one rule for both
  keeps the model from having to work out which text it is editing;
- an attempt's answer alone determines its files (base + blocks), so a resumed or repeated attempt gives the same bytes.
The price: the model writes again the blocks that were right (its previous answer is in the history to copy from).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from engine.executor.edits.model import EditProblem

__all__ = ["APPLIES_TO", "EDIT_INSTRUCTIONS", "fence_for", "quote_problem", "retry_message"]

EDIT_INSTRUCTIONS = """\
Answer with edit blocks, not whole files and not JSON. For each change, write the file's path on a line of its own,
then a fenced block:

src/shop.py
```python
<<<<<<< SEARCH
def total(items):
    return sum(items)
=======
def total(items, tax=0.0):
    return sum(items) * (1 + tax)
>>>>>>> REPLACE
```

Rules:
- SEARCH copies the current lines of the file exactly (indentation too), enough of them to match one place only.
- REPLACE holds the new lines. Use several blocks for several places, in file order; keep each block small.
- To create a file that does not exist, write its path on a line of its own, then the whole file in a plain
  fenced block (no SEARCH or REPLACE lines).
- Write only the requested files. If the content has lines of ```, fence the block with ```` instead.
"""
"""The edit form explained, for the system prompt (one example)."""

APPLIES_TO = (
    "Your next answer starts again from the files exactly as the first message shows them: write every edit block "
    "again (also those that worked), each SEARCH copying lines of those files, not of the result of your previous "
    "answer."
)
"""Which text the next blocks apply to (the base); every retry message ends with it, verify failures included."""


def fence_for(*texts: str) -> str:
    """A backtick fence longer than any run of backticks that starts a line of `texts` (at least 3)."""
    longest = 0
    for text in texts:
        for line in text.split("\n"):
            stripped = line.lstrip()
            run = len(stripped) - len(stripped.lstrip("`"))
            longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _numbered(closest: Sequence[tuple[int, str]]) -> str:
    width = len(str(closest[-1][0]))
    return "\n".join(f"{n:>{width}} | {line}" for n, line in closest)


def quote_problem(problem: EditProblem, *, with_block: bool = True) -> str:
    """One problem as the retry shows it: the reason, the block as written, and the closest real lines."""
    parts = [f"- {problem.message}"]
    if problem.quote and with_block:
        fence = fence_for(problem.quote)
        parts.append(f"  Your block:\n{fence}\n{problem.quote}\n{fence}")
    if problem.closest:
        first, last = problem.closest[0][0], problem.closest[-1][0]
        where = f"line {first}" if first == last else f"lines {first}-{last}"
        lines = "\n".join(line for _, line in problem.closest)
        fence = fence_for(lines)
        parts.append(f"  The closest lines of {problem.path} ({where}) are:\n{fence}\n{_numbered(problem.closest)}\n"
                     f"{fence}")
    return "\n".join(parts)


def retry_message(problems: Iterable[EditProblem], *, applies_to: str = APPLIES_TO) -> str:
    """The user message after an attempt whose blocks could not be used: nothing of it was written."""
    listed = list(problems)
    shown: set[tuple[int | None, str]] = set()
    parts = []
    for p in listed:  # a block with two problems is quoted once
        parts.append(quote_problem(p, with_block=(p.block, p.quote) not in shown))
        shown.add((p.block, p.quote))
    quoted = "\n".join(parts)
    count = "1 problem" if len(listed) == 1 else f"{len(listed)} problems"
    return (f"Your edit blocks could not be applied ({count}), so nothing of that answer was written:\n{quoted}\n\n"
            f"{applies_to}")
