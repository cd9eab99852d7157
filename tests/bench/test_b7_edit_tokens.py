"""B7's figure is a count, not a time, so it can be a test: edit blocks for ten small changes in a 1,500-line file
cost at most a quarter of the tokens of whole-file answers, both attempts included, and both forms apply exactly."""

from __future__ import annotations

from bench import b7_edit_tokens


def test_edit_blocks_cost_at_most_a_quarter_of_whole_files() -> None:
    [figure] = b7_edit_tokens.run(quick=True)
    assert figure.ratio <= b7_edit_tokens.TARGET and figure.passed


def test_the_fixture_has_ten_changes_of_three_lines_in_1500_lines() -> None:
    base, target = b7_edit_tokens.fixture()
    changed = [(a, b) for a, b in zip(base.splitlines(), target.splitlines(), strict=True) if a != b]
    assert len(base.splitlines()) == len(target.splitlines()) == 1500 and len(changed) == 30
