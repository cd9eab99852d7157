"""The answer form of a run that did not choose one, by the rule in engine.executor.forms, with what only the
project knows: the delegation log's record of each (backend, model) pair's edit answers, and the outputs' sizes.
`status` shows the same rule for the session's model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.delegation import metrics
from engine.executor import Executor
from engine.executor.forms import FormChoice, choose_form, recent_edit_answers
from states import RunData

__all__ = ["edit_answers", "run_form", "status_form"]


def run_form(
    log: Path, executor: Executor, *, model: str, bases: Mapping[str, bytes | None], count: Callable[[str], int],
) -> FormChoice:
    """The form for a run with `answer_form` auto: the session's if enable set one, else the rule."""
    sizes = [count(b.decode("utf-8", "replace")) for b in bases.values() if b is not None]
    backend = executor.backend.name
    return choose_form(
        backend=backend, model=model, parameters=executor.parameters, session_form=executor.answer_form,
        recent=recent_edit_answers(metrics.read_log(log).records, backend=backend, model=model),
        largest_output_tokens=max(sizes, default=0),
    )


def status_form(log: Path, status: Mapping[str, Any]) -> dict[str, str]:
    """`answer_form` and `answer_form_rule` for `status`: what a delegation with no form of its own gets now."""
    backend, model = status.get("backend"), status.get("model")
    if not backend or status.get("state") not in ("loaded", "delegating"):
        return {}
    choice = choose_form(
        backend=backend, model=model, parameters=status.get("parameters"), session_form=status.get("answer_form"),
        recent=recent_edit_answers(metrics.read_log(log).records, backend=backend, model=str(model)),
    )
    return {"answer_form": choice.form, "answer_form_rule": choice.rule}


def edit_answers(data: RunData, *, done: bool) -> list[bool]:
    """For the delegation log: whether each edit-form answer of the run applied, in order. Every failed attempt left
    a turn (`answer`: its answer could not be used; `verify`: it applied and failed verification); a run that ended
    `done` applied its last answer too."""
    if data.answer_form != "edits":
        return []
    marks = [turn["kind"] != "answer" for turn in data.history]
    return [*marks, True] if done else marks
