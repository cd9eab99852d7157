"""Runaway answers cost the readers little (issue 19 point 4, issue 22): 40 KB of fence lines and a block of 16,000
divider lines are each read in under 2 s and 200 MB, by every reader (edit blocks, whole files, the JSON form's
fallback). Generous bounds: the reader before this change took minutes (a SEARCH after thousands of fence lines
searched the rest of the answer again from every fence; every divider line kept a copy of the whole block), so any
return of that shape fails them on a loaded machine too."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable

import pytest

from engine.executor.answers import AnswerError, parse_answer, parse_whole_answer
from engine.executor.edits import parse_edits, parse_whole

SECONDS, BYTES = 2.0, 200_000_000
BLOCK = "src/a.py\n```python\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n"
RUNAWAYS = {
    "40 KB of fence lines with info strings, then a block": "```python\n" * 4_000 + BLOCK,
    "40 KB of bare fence lines": "```\n" * 10_000,
    "40 KB of tilde and backtick fences, alternating lengths": "~~~~\n```\n~~~\n````python\n" * 2_000,
    "one fence line of 40 KB": "```a" + " " * 40_000 + "b\n" + BLOCK,
    "16,000 divider lines in one block": "src/a.py\n```\n<<<<<<< SEARCH\nx = 1\n" + "=======\n" * 16_000
                                         + ">>>>>>> REPLACE\n```\n",
    "16,000 divider lines outside any block": "=======\n" * 16_000 + BLOCK,
}


def _quietly(read: Callable[[str, list[str]], object]) -> Callable[[str, list[str]], object]:
    def run(text: str, outputs: list[str]) -> object:
        try:
            return read(text, outputs)
        except AnswerError as exc:  # a runaway answer is refused with a message: what counts here is its cost
            return exc
    return run


READERS: dict[str, Callable[[str, list[str]], object]] = {
    "edit blocks": lambda text, outputs: parse_edits(text, outputs=outputs),
    "whole files": lambda text, outputs: parse_whole(text, outputs=outputs),
    "whole form answer": _quietly(parse_whole_answer),
    "JSON form answer": _quietly(parse_answer),
}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("shape", list(RUNAWAYS))
def test_a_runaway_answer_is_read_in_under_2_s_and_200_mb(shape: str, reader: str) -> None:
    text, read = RUNAWAYS[shape], READERS[reader]
    started = time.perf_counter()
    read(text, ["src/a.py"])
    seconds = time.perf_counter() - started
    tracemalloc.start()  # measured apart: tracing slows Python down several times
    try:
        read(text, ["src/a.py"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < SECONDS and peak < BYTES, (seconds, peak)


def test_a_block_with_16000_divider_lines_is_refused_with_a_message_for_the_model() -> None:
    parsed = parse_edits(RUNAWAYS["16,000 divider lines in one block"], outputs=["src/a.py"])
    [problem] = parsed.problems
    assert problem.kind == "too_many_dividers" and "16000 lines like =======" in problem.message
    assert "exactly one ======= line" in problem.message


def test_the_block_after_thousands_of_fence_lines_is_still_read() -> None:
    parsed = parse_edits(RUNAWAYS["40 KB of fence lines with info strings, then a block"], outputs=["src/a.py"])
    assert [(b.search, b.replace) for b in parsed.blocks] == [("x = 1\n", "x = 2\n")] and not parsed.problems
