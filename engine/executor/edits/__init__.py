"""The edit-block answer form (issue #12, docs/edit-blocks.md): the model changes existing files with
search/replace blocks and creates new ones whole, and no code travels inside JSON strings. Pure functions only:

    parse_edits(text, outputs=...)        the answer's blocks, in order, and what is wrong with it (parse.py)
    parse_whole(text, outputs=...)        the `whole` form: each file complete in a fenced block (parse.py)
    apply_edits(base, blocks, path=...)   one file's new bytes, or the problems (apply.py)
    apply_answer(parsed, files)           every output at once, all or nothing (apply.py)
    retry_message(problems)               what the model is told when its blocks fail (feedback.py)
    summarize_change / unified_diff       what changed, compactly (summary.py)
    blocks_for(base, target, path=...)    the smallest answer for a known change, for benchmarks (synth.py)

Blocks of one answer apply in sequence; every attempt starts again from the run's base (feedback.py says why).
"""

from __future__ import annotations

from engine.executor.edits.apply import AnswerApplied, Applied, apply_answer, apply_edits, closest_lines
from engine.executor.edits.feedback import APPLIES_TO, EDIT_INSTRUCTIONS, fence_for, quote_problem, retry_message
from engine.executor.edits.model import PROBLEM_KINDS, EditBlock, EditProblem, ParsedAnswer
from engine.executor.edits.parse import fenced_bodies, normalize_path, parse_edits, parse_whole
from engine.executor.edits.summary import FileChange, changed_regions, summarize_change, unified_diff
from engine.executor.edits.synth import blocks_for, render_block, whole_file_answer
from engine.executor.edits.text import FileText, check_utf8

__all__ = [
    "APPLIES_TO",
    "EDIT_INSTRUCTIONS",
    "PROBLEM_KINDS",
    "AnswerApplied",
    "Applied",
    "EditBlock",
    "EditProblem",
    "FileChange",
    "FileText",
    "ParsedAnswer",
    "apply_answer",
    "apply_edits",
    "blocks_for",
    "changed_regions",
    "check_utf8",
    "closest_lines",
    "fence_for",
    "fenced_bodies",
    "normalize_path",
    "parse_edits",
    "parse_whole",
    "quote_problem",
    "render_block",
    "retry_message",
    "summarize_change",
    "unified_diff",
    "whole_file_answer",
]
