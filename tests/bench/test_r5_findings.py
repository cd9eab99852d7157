"""What R5 found in the engine, each as the smallest case (RELIABILITY.md, R5, "What R5 found"), fixed since and now
regression tests. Both start the same way: the person creates a file at a new output path while the model writes,
and deletes it again as soon as the run has looked.

The first one is what `python -m bench.reliability --short --only R5 --seed 5` lost (round 1, run 104); the second is
what CI's R5 short form (seed 6) lost now and then ("reported found=deleted ..., the check saw created")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.delegation import shared_tree, steps
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend


async def _created_while_the_model_writes(engine: Engine, project_dir: Path) -> dict[str, Any]:
    """A delegation of the new file b.py, during whose generation the person creates b.py; its result."""
    backend = ScriptedBackend().reply(files_answer({"b.py": "the run's b\n"}))
    backend.block = anyio.Event()
    use_backend(engine, backend)
    with anyio.fail_after(20):
        async with engine.background():
            started = await engine.delegate(task="t", output_files=["b.py"], max_attempts=2, wait=0)
            await backend.wait_active(1)  # packed: the base (no b.py) is journaled
            (project_dir / "b.py").write_text("the person's new file\n")
            backend.block.set()
            return await engine.result(started["run_id"], wait=20)


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_conflict_undone_between_the_look_and_the_write_is_still_reported(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_apply = steps.apply_file

    def apply_file(*args: Any) -> Any:
        # The person's second edit lands after the step looked at every file, before apply_file's own check: the
        # file they created while the model generated is gone again (the run's base: absent).
        (project_dir / "b.py").unlink(missing_ok=True)
        return real_apply(*args)

    monkeypatch.setattr(steps, "apply_file", apply_file)
    result = await _created_while_the_model_writes(engine, project_dir)
    # Either outcome keeps to the rule: the run reports the conflict its look found, or it goes on (the file holds
    # its base again). Failing "in conflict" with no conflict named (error "conflict: . The run left ...") does not.
    assert result["state"] == "done" or result["conflicts"], (result["state"], result["error"])


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_conflict_reports_what_the_look_saw_even_if_the_person_deletes_the_file_right_after(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_on_disk = shared_tree.on_disk

    def deleted_right_after_the_look(path: Path) -> str:
        seen = real_on_disk(path)
        if path.name == "b.py":
            path.unlink(missing_ok=True)
        return seen

    monkeypatch.setattr(shared_tree, "on_disk", deleted_right_after_the_look)
    result = await _created_while_the_model_writes(engine, project_dir)
    # The report was once made from a second look, which saw no file: "deleted", of a file the run never had.
    assert result["state"] == "failed"
    assert [(c["path"], c["found"], c["during"]) for c in result["conflicts"]] == [("b.py", "created", "writing")]
    assert not (project_dir / "b.py").exists()  # the person's delete stands: the run wrote nothing
