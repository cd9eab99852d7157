"""Every messy answer of the corpus gives exactly the expected bytes, or exactly the expected kinds of problem (and
then nothing at all is applied)."""

from __future__ import annotations

from collections import Counter

import pytest

from engine.executor.edits import PROBLEM_KINDS, apply_answer, parse_edits
from tests.engine.executor.edits.corpus import CASES, Case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_messy_answer_gives_the_expected_outcome(case: Case) -> None:
    parsed = parse_edits(case.answer, outputs=list(case.files))
    applied = apply_answer(parsed, case.files)
    kinds = tuple(sorted({p.kind for p in applied.problems}))
    assert kinds == case.errors, [p.message for p in applied.problems]
    if case.errors:
        assert applied.contents == {} and all(p.message for p in applied.problems)
    else:
        assert dict(applied.contents) == case.result
    notes = " | ".join(applied.notes)
    for words in case.notes:
        assert words in notes


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)
    categories = Counter(c.category for c in CASES)
    assert {"prose", "path", "fences", "markers", "cut off", "whitespace", "overlap", "rules", "bytes",
            "new files"} <= set(categories)
    assert {k for c in CASES for k in c.errors} <= PROBLEM_KINDS
