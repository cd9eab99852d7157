"""What the model is told: the instructions' example is itself a valid answer, and a retry quotes each failing block
with its reason and the closest real lines, and says which text the next blocks apply to (the base)."""

from __future__ import annotations

import re

from engine.executor.edits import (
    APPLIES_TO,
    EDIT_INSTRUCTIONS,
    apply_answer,
    fence_for,
    parse_edits,
    retry_message,
)

SHOP = b"import math\n\n\ndef total(items):\n    return sum(items)\n"


def test_the_instructions_example_is_an_answer_that_parses_and_applies() -> None:
    example = EDIT_INSTRUCTIONS[EDIT_INSTRUCTIONS.index("src/shop.py") : EDIT_INSTRUCTIONS.index("Rules:")]
    parsed = parse_edits(example, outputs=["src/shop.py"])
    assert parsed.ok and parsed.notes == ()
    result = apply_answer(parsed, {"src/shop.py": SHOP})
    assert result.contents == {"src/shop.py": SHOP.replace(
        b"def total(items):\n    return sum(items)", b"def total(items, tax=0.0):\n    return sum(items) * (1 + tax)")}


def test_the_instructions_are_short() -> None:
    assert len(EDIT_INSTRUCTIONS) < 1200 and "JSON" in EDIT_INSTRUCTIONS


def test_a_retry_quotes_the_failing_block_its_reason_and_the_closest_numbered_lines() -> None:
    answer = ("src/shop.py\n```python\n<<<<<<< SEARCH\ndef total(items):\n    return sum(item)\n=======\n"
              "def total(items):\n    return sum(items, 0)\n>>>>>>> REPLACE\n```\n")
    result = apply_answer(parse_edits(answer, outputs=["src/shop.py"]), {"src/shop.py": SHOP})
    message = retry_message(result.problems)
    assert "nothing of that answer was written" in message
    assert "block 1 for src/shop.py: the SEARCH text matches no lines" in message
    assert "    return sum(item)\n=======" in message
    assert "The closest lines of src/shop.py (lines 4-5)" in message
    assert re.search(r"^4 \| def total\(items\):\n5 \|     return sum\(items\)$", message, re.MULTILINE)
    assert message.endswith(APPLIES_TO)


def test_the_retry_says_the_next_blocks_apply_to_the_files_as_first_shown() -> None:
    assert "first message" in APPLIES_TO and "every edit block" in APPLIES_TO
    assert "not of the result of your previous answer" in APPLIES_TO


def test_a_retry_lists_every_problem() -> None:
    answer = "a.py\n```\n<<<<<<< SEARCH\nnope\n=======\nx\n>>>>>>> REPLACE\n```\nb.py\n```\n<<<<<<< SEARCH\n"
    result = apply_answer(parse_edits(answer, outputs=["a.py"]), {"a.py": b"a = 1\n"})
    message = retry_message(result.problems)
    assert "(3 problems)" in message and "not a file you may write" in message and "no lines" in message
    assert "token limit" in message and message.count("Your block:") == 2


def test_a_quoted_block_gets_a_fence_longer_than_any_inside_it() -> None:
    assert fence_for("x\n```\ny") == "````" and fence_for("plain") == "```" and fence_for("  `````md") == "``````"
