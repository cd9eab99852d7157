"""Building answers instead of reading them: the smallest edit-block answer that turns one text into another, and the
whole-file JSON answer of the older form, so the two can be compared (token counts, BENCHMARKS.md). Pure."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence

from engine.executor.edits.feedback import fence_for
from engine.executor.edits.parse import is_divider, is_replace, is_search
from engine.executor.edits.text import FileText

__all__ = ["blocks_for", "render_block", "whole_file_answer"]


def render_block(path: str, search: Sequence[str], replace: Sequence[str]) -> str:
    """One block in the asked-for form: the path, a fence, the markers; lines given without endings."""
    body_search, body_replace = "\n".join(search), "\n".join(replace)
    fence = fence_for(body_search, body_replace)
    parts = [path, fence, "<<<<<<< SEARCH", *search, "=======", *replace, ">>>>>>> REPLACE", fence]
    return "\n".join(parts) + "\n"


def _count(lines: Sequence[str], search: Sequence[str], limit: int = 2) -> int:
    k, found = len(search), 0
    for i in range(len(lines) - k + 1):
        if lines[i] == search[0] and list(lines[i : i + k]) == list(search):
            found += 1
            if found >= limit:
                break
    return found


def _changes(old: Sequence[str], new: Sequence[str], merge_gap: int) -> list[tuple[int, int, int, int]]:
    changes: list[tuple[int, int, int, int]] = []
    matcher = difflib.SequenceMatcher(None, list(old), list(new), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if changes and i1 - changes[-1][1] <= merge_gap:
            p1, _, q1, _ = changes.pop()
            changes.append((p1, i2, q1, j2))
        else:
            changes.append((i1, i2, j1, j2))
    return changes


def _widen(current: Sequence[str], start: int, end: int, context: int) -> tuple[int, int]:
    """The smallest [lo, hi) around [start, end), with `context` lines each side where there are, that is found
    exactly once in `current` (lines after the change tried before lines above it); the whole text at worst."""
    size = len(current)
    for extra in range(size + 1):
        for above in range(extra + 1):
            lo, hi = max(0, start - context - above), min(size, end + context + extra - above)
            if hi > lo and _count(current, current[lo:hi]) == 1:
                return lo, hi
    return 0, size


def blocks_for(base: str | None, target: str, *, path: str, context_lines: int = 0) -> str:
    """The edit-block answer (blocks in file order, each applied to what the ones before it left) that turns `base`
    into `target`: each change with `context_lines` unchanged lines around it, widened until its SEARCH matches
    exactly once. `base` None: one empty-SEARCH block creating `target`.

    Limits: the base's line endings and final newline are kept by the applier, so `target` must end with a newline
    exactly when `base` does (ValueError otherwise); lines that read as markers cannot be expressed (ValueError)."""
    new = list(FileText.from_text(target).lines)
    if base is None:
        return render_block(path, [], new)
    parsed_base, parsed_target = FileText.from_text(base), FileText.from_text(target)
    keeps_final = parsed_base.final_newline if parsed_base.lines else True
    if parsed_target.lines and parsed_target.final_newline != keeps_final:
        raise ValueError("base and target differ in their final newline, which edit blocks keep as the base has it")
    if any(is_search(x) or is_replace(x) or is_divider(x) for x in [*parsed_base.lines, *new]):
        raise ValueError("a line of base or target reads as an edit-block marker")
    current = list(parsed_base.lines)
    offset, blocks = 0, []
    for i1, i2, j1, j2 in _changes(parsed_base.lines, new, 2 * context_lines):
        start, end = i1 + offset, i2 + offset
        lo, hi = _widen(current, start, end, context_lines)
        search = current[lo:hi]
        replace = current[lo:start] + new[j1:j2] + current[end:hi]
        blocks.append(render_block(path, search, replace))
        current[lo:hi] = replace
        offset += (j2 - j1) - (i2 - i1)
    return "\n".join(blocks)


def whole_file_answer(files: Mapping[str, str]) -> str:
    """The JSON answer of the whole-file form (engine.executor.answers): every file in full inside a JSON string."""
    return json.dumps({"files": [{"path": p, "content": c} for p, c in files.items()]})
