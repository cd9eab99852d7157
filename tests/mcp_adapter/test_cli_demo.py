"""The demo's pipeline and its closing message, with scripted answers: a median that passes the check, one that
fails it (the run rolls back and says so), answers the engine cannot use, and a run that went wrong. The real run
on the embedded model is in test_cli_delegation.py."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from mcp_adapter.cli.demo import DEMO_CHECK, DEMO_OUTPUT, DEMO_VERIFY, delegate_demo, outcome, prepare_scratch, verdict

pytestmark = pytest.mark.anyio

TINY = "smollm2:135m-instruct"

RIGHT = '''def median(values: list[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
'''
WRONG = "def median(values: list[float]) -> float:\n    return values[0]\n"


async def _demo(engine: Engine, project_dir: Path, *answers: str) -> dict[str, object]:
    prepare_scratch(project_dir)
    use_backend(engine, ScriptedBackend().reply(*answers), model=TINY)
    with anyio.fail_after(30):
        return await delegate_demo(engine)


@pytest.mark.answer_form_json
async def test_a_median_that_passes_the_check_is_kept_and_the_demo_says_so(engine: Engine, project_dir: Path) -> None:
    result = await _demo(engine, project_dir, files_answer({DEMO_OUTPUT: RIGHT}))
    assert outcome(result) == "passed" and result["attempts"] == 1
    assert "stats.median: 4 checks passed" in result["verification"]["output_tail"]  # type: ignore[index]
    message = verdict(result, backend="embedded")
    assert message.startswith(f"The tiny embedded model ({TINY}) wrote stats.py and it passed the check `")
    assert DEMO_VERIFY in message and "rolled back" not in message
    assert (project_dir / DEMO_OUTPUT).read_text() == RIGHT


@pytest.mark.answer_form_json
async def test_a_median_that_fails_the_check_rolls_back_and_the_demo_says_so_plainly(
    engine: Engine, project_dir: Path
) -> None:
    result = await _demo(engine, project_dir, *[files_answer({DEMO_OUTPUT: WRONG})] * 3)
    assert outcome(result) == "failed_check" and result["state"] == "failed" and result["attempts"] == 3
    tail = result["verification"]["output_tail"]  # type: ignore[index]
    assert "median([3.0, 1.0, 2.0]) returned 3.0, expected 2.0" in tail
    message = verdict(result, backend="embedded")
    assert message.startswith(f"The tiny embedded model ({TINY}) wrote code that failed the check `{DEMO_VERIFY}`")
    assert "the run rolled back and the demo project's files are unchanged" in message
    assert "only proves the plumbing; use a real coder model on Ollama for real work" in message
    assert not (project_dir / DEMO_OUTPUT).exists() and (project_dir / DEMO_CHECK).exists()
    assert "real coder model" not in verdict(result, backend="ollama")  # another model is not called tiny


async def test_answers_the_engine_cannot_use_are_told_apart_from_a_failed_check(
    engine: Engine, project_dir: Path
) -> None:
    result = await _demo(engine, project_dir, *["no files here, sorry"] * 3)
    assert outcome(result) == "unusable_answer"
    message = verdict(result, backend="embedded")
    assert "never gave an answer the engine could use" in message and "nothing was written" in message
    assert not (project_dir / DEMO_OUTPUT).exists()


def test_a_run_that_went_wrong_is_not_passed_off_as_the_models_failure() -> None:
    conflict = {"run_id": "run-1", "state": "failed", "attempts": 1, "model": TINY, "conflicts": [{"path": "stats.py"}],
                "verification": {"passed": None}, "error": "conflict: stats.py was changed by someone else"}
    backend_down = {**conflict, "conflicts": [], "error": "generation failed after 3 attempt(s): backend error: gone"}
    assert outcome(conflict) == outcome(backend_down) == outcome({**conflict, "state": "cancelled"}) == "broken"
    assert verdict(conflict, backend="embedded") == (
        "The run did not end the way the demo expects (state failed): conflict: stats.py was changed by someone else")
