from __future__ import annotations

import pytest
from transitions import MachineError

from states import (
    DELEGATION,
    MACHINES,
    SESSION,
    MachineModel,
    MachineSpec,
    RunData,
    SessionData,
    TransitionSpec,
    build_machine,
)


def _reachable(spec: MachineSpec) -> set[str]:
    seen, frontier = {spec.initial}, [spec.initial]
    while frontier:
        state = frontier.pop()
        for t in spec.transitions:
            if state in t.source and t.dest not in seen:
                seen.add(t.dest)
                frontier.append(t.dest)
    return seen


@pytest.mark.parametrize("spec", list(MACHINES.values()), ids=list(MACHINES))
def test_every_declared_state_is_reachable_from_the_initial_state(spec: MachineSpec) -> None:
    assert _reachable(spec) == set(spec.states)


@pytest.mark.parametrize("spec", [s for s in MACHINES.values() if s.terminal], ids=lambda s: s.kind)
def test_the_built_machine_refuses_every_event_in_a_terminal_state(spec: MachineSpec) -> None:
    # The declaration cannot name a terminal source (the test below); this checks the machine built from it, where
    # auto transitions (`to_<state>`) or a '*' source would let a finished machine move again.
    machine = build_machine(spec)
    for state in spec.terminal:
        model = MachineModel(spec.data_type())
        machine.add_model(model, initial=state)
        assert machine.get_triggers(state) == []
        for trigger in spec.triggers:
            with pytest.raises(MachineError):
                model.trigger(trigger)
            assert model.state == state
        machine.remove_model(model)


def test_a_declaration_that_leaves_a_terminal_state_is_refused() -> None:
    with pytest.raises(ValueError, match="leaves terminal state"):
        MachineSpec(
            kind="bad",
            states=("a", "b"),
            initial="a",
            terminal=frozenset({"b"}),
            transitions=(TransitionSpec("go", ("a",), "b"), TransitionSpec("back", ("b",), "a")),
        )


def test_a_declaration_naming_an_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="undeclared state 'c'"):
        MachineSpec(kind="bad", states=("a",), initial="a", transitions=(TransitionSpec("go", ("a",), "c"),))


def test_verify_failure_retries_while_attempts_remain_then_rolls_back() -> None:
    machine = build_machine(DELEGATION)
    model = MachineModel(RunData(attempt=1, max_attempts=2, verify="true"))
    machine.add_model(model, initial="verifying")
    assert model.trigger("verify_failed")
    assert model.state == "retrying"

    last = MachineModel(RunData(attempt=2, max_attempts=2, verify="true"))
    machine.add_model(last, initial="verifying")
    assert last.trigger("verify_failed")
    assert last.state == "rolling_back"


def test_writing_without_a_verify_command_finishes_the_run() -> None:
    machine = build_machine(DELEGATION)
    with_verify, without = MachineModel(RunData(verify="pytest")), MachineModel(RunData(verify=""))
    machine.add_model(with_verify, initial="writing")
    machine.add_model(without, initial="writing")
    with_verify.trigger("written")
    without.trigger("written")
    assert (with_verify.state, without.state) == ("verifying", "done")


def test_an_event_from_the_wrong_state_raises() -> None:
    machine = build_machine(SESSION)
    model = MachineModel(SessionData())
    machine.add_model(model, initial="idle")
    with pytest.raises(MachineError):
        model.trigger("ready")
    assert model.state == "idle"


def test_restoring_a_model_into_a_stored_state_runs_no_enter_callback() -> None:
    entered: list[str] = []
    machine = build_machine(DELEGATION)
    machine.on_enter_verifying(lambda event: entered.append("verifying"))
    machine.on_enter_done(lambda event: entered.append("done"))
    model = MachineModel(RunData(verify="true"))
    machine.add_model(model, initial="verifying")
    assert entered == []
    model.trigger("passed")
    assert entered == ["done"]
