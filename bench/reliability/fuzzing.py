"""The hypothesis runner the fuzzing scenarios (R3, R6) share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st

__all__ = ["counting_runner"]


def counting_runner(
    check: Callable[[Any], None], strategy: st.SearchStrategy[Any], examples: int, seed_value: int,
    explicit: Sequence[Any],
) -> Callable[[], None]:
    """`check` over `explicit` cases, then `examples` drawn from `strategy`. Problems are recorded by `check`, not
    raised: every example counts once (no shrinking reruns in the totals)."""
    def body(case: Any) -> None:
        check(case)

    for case in reversed(explicit):
        body = example(case)(body)
    return seed(seed_value)(settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                                     suppress_health_check=list(HealthCheck))(given(strategy)(body)))
