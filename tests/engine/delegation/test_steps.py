from __future__ import annotations

from engine.delegation.steps import STEPS
from states import DELEGATION


def test_there_is_one_step_for_each_state_a_run_can_be_driven_from() -> None:
    assert set(STEPS) == set(DELEGATION.states) - DELEGATION.terminal
