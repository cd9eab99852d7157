"""The loop guard on real answers: the embedded model's own loops (tests/engine/delegation/loops/, answers SmolLM2-135M
gave to the standard tier's `test-roman` and `gen-json-service-entry` on 2026-12-06, cut at 2,048 tokens) are caught
early, and no real file (the eval suites' reference solutions, this repository's own code and documents) is ever
taken for one, at any point while it streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.delegation.repetition import Repetition, RepetitionLimits, find_repetition
from engine.errors import InvalidArgument

REPO = Path(__file__).resolve().parents[3]
LOOPS = Path(__file__).parent / "loops"


def _stream(text: str, step: int) -> Iterator[str]:
    for end in range(step, len(text) + step, step):
        yield text[:end]


def _first_stop(text: str, *, step: int = 16) -> tuple[str, Repetition] | None:
    for prefix in _stream(text, step):
        if (found := find_repetition(prefix)) is not None:
            return prefix, found
    return None


@pytest.mark.parametrize("name", ["test-roman", "gen-json-service-entry"])
def test_the_embedded_models_real_loops_stop_well_before_the_answer_ends(name: str) -> None:
    answer = (LOOPS / f"{name}.txt").read_text()
    stop = _first_stop(answer)
    assert stop is not None
    prefix, found = stop
    assert len(prefix) < len(answer) * 0.6, (len(prefix), len(answer))
    assert found.times >= 4 and found.times * found.block_chars >= 1200
    kept = prefix[:found.start + found.block_chars]
    # What the retry shows the model: its answer up to the loop, with one copy of the block.
    assert find_repetition(kept) is None
    assert kept.endswith("\n") and prefix.startswith(kept)


def _real_files() -> Iterator[Path]:
    yield from (p for p in (REPO / "mcp_adapter" / "resources" / "eval").rglob("*")
                if p.is_file() and "solution" in p.parts)
    for folder in ("engine", "states", "mcp_adapter", "tests", "bench", "docs"):
        for pattern in ("*.py", "*.md"):
            yield from (REPO / folder).rglob(pattern)
    yield REPO / "README.md"


def test_no_real_file_is_taken_for_a_loop_at_any_point_while_it_streams() -> None:
    files = list(_real_files())
    assert len(files) > 200
    taken = {}
    for path in files:
        text = path.read_text(errors="replace")
        if (stop := _first_stop(text + "\n", step=128)) is not None:
            taken[str(path.relative_to(REPO))] = stop[1].describe()
    assert taken == {}


def test_three_copies_of_a_long_block_pass_and_the_fourth_stops_the_answer() -> None:
    block = "".join(f"    assert parse('{i}') == {i}  # a line long enough to weigh\n" for i in range(8))
    head = "tests.py\n```python\ndef test_it():\n"
    assert find_repetition(head + block * 3) is None
    found = find_repetition(head + block * 4)
    assert found is not None
    assert (found.lines, found.times, found.start) == (8, 4, len(head))


def test_a_short_line_repeated_stops_only_once_the_copies_are_long() -> None:
    line = "    0,\n"
    assert find_repetition("data = [\n" + line * 100) is None  # 700 characters: a table of zeros may be real
    assert find_repetition("data = [\n" + line * 200) is not None


def test_blank_lines_alone_are_no_loop() -> None:
    assert find_repetition("x = 1\n" + "\n" * 3000) is None


def test_the_line_still_being_written_is_not_counted() -> None:
    block = "".join(f"    self.check({i}, 'a line long enough to weigh in the copies')\n" for i in range(6))
    assert find_repetition("x\n" + block * 3 + block[:-1]) is None  # the fourth copy's last line is not done
    found = find_repetition("x\n" + block * 4 + "    self.ch")
    assert found is not None and found.times == 4


@pytest.mark.parametrize(("raw", "times"), [("", 4), (" ", 4), ("0", 0), ("6", 6), ("2.9", 2)])
def test_the_setting_reads_copies_in_a_row_and_zero_turns_it_off(raw: str, times: int) -> None:
    limits = RepetitionLimits.from_env({"LOCAL_LLM_REPEAT_TIMES": raw})
    assert limits.times == times
    assert limits.on is (times > 0)


@pytest.mark.parametrize("raw", ["1", "-2", "many", "inf"])
def test_a_setting_that_is_no_count_of_copies_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(InvalidArgument, match=r"\$LOCAL_LLM_REPEAT_TIMES"):
        RepetitionLimits.from_env({"LOCAL_LLM_REPEAT_TIMES": raw})


def test_with_the_guard_off_nothing_is_a_loop() -> None:
    assert find_repetition((LOOPS / "test-roman.txt").read_text(), RepetitionLimits(times=0)) is None
