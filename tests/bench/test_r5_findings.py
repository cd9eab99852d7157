"""What R5 found in the engine, each as the smallest case (RELIABILITY.md, R5, "What R5 found"). Left to the engine's
owners; fixed since (steps._writing reports the conflicts its look found), so this is now a regression test.

The first one is what `python -m bench.reliability --short --only R5 --seed 5` loses (round 1, run 104)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.delegation import steps
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_conflict_undone_between_the_look_and_the_write_is_still_reported(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = ScriptedBackend().reply(files_answer({"b.py": "the run's b\n"}))
    backend.block = anyio.Event()
    use_backend(engine, backend)
    real_apply = steps.apply_file

    def apply_file(*args: Any) -> Any:
        # The person's second edit lands after the step looked at every file, before apply_file's own check: the
        # file they created while the model generated is gone again (the run's base: absent).
        (project_dir / "b.py").unlink(missing_ok=True)
        return real_apply(*args)

    monkeypatch.setattr(steps, "apply_file", apply_file)
    with anyio.fail_after(20):
        async with engine.background():
            started = await engine.delegate(task="t", output_files=["b.py"], max_attempts=2, wait=0)
            await backend.wait_active(1)  # packed: the base (no b.py) is journaled
            (project_dir / "b.py").write_text("the person's new file\n")
            backend.block.set()
            result = await engine.result(started["run_id"], wait=20)
    # Either outcome keeps to the rule: the run reports the conflict its look found, or it goes on (the file holds
    # its base again). Failing "in conflict" with no conflict named (error "conflict: . The run left ...") does not.
    assert result["state"] == "done" or result["conflicts"], (result["state"], result["error"])
