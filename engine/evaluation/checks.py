"""The hidden check of a task, run after its delegation ended, and the proof that the model never saw it.

The check's files are copied into a directory of their own outside the scratch project only once the run is over,
and the command runs in the scratch project with `{check}` pointing there; the model's prompt never names it. What
the model did get (the packed system and user messages, and each retry's feedback) is read back from the run's
stored data and searched for the check's own lines.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.delegation.verify import run_verify
from engine.evaluation.tasks import EvalTask, expand_command, hidden_lines
from states import RunData

__all__ = ["leaked_lines", "requests_of", "run_hidden_check"]

CHECK_TAIL_BYTES = 2000


async def run_hidden_check(task: EvalTask, project: Path) -> dict[str, Any]:
    """Run the task's hidden check in `project`: `passed` when it exits 0 within its timeout. The check sees the
    project on PYTHONPATH, and $EVAL_PROJECT / $EVAL_CHECK name the project and its own files."""
    with tempfile.TemporaryDirectory(prefix=f"local-llm-eval-check-{task.id}-") as tmp:
        check_dir = Path(tmp) / "check"
        if task.check_dir.is_dir():
            shutil.copytree(task.check_dir, check_dir)
        else:
            check_dir.mkdir()
        python_path = os.pathsep.join(p for p in (str(project), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": python_path, "PYTHONDONTWRITEBYTECODE": "1",
               "EVAL_PROJECT": str(project), "EVAL_CHECK": str(check_dir)}
        outcome = await run_verify(expand_command(task.hidden_check, check_dir=check_dir), cwd=project,
                                   timeout=task.hidden_check_timeout, tail_bytes=CHECK_TAIL_BYTES, env=env)
    return {"ran": True, **outcome.as_dict()}


def requests_of(run: Mapping[str, Any]) -> list[str]:
    """What the model was sent in a run (a `run_view`): the packed system and user messages (and the shown exchanges
    between them), and each retry's feedback. Its own earlier answers, which a retry repeats, are the model's text,
    not ours."""
    data = RunData.from_json(run["data"])
    texts = [data.prompt["system"], *data.prompt.get("examples", []), data.prompt["user"]] if data.prompt else []
    texts += [turn["detail"] for turn in data.history]
    return [t for t in texts if t]


def leaked_lines(task: EvalTask, requests: Sequence[str]) -> list[str]:
    """The hidden check's lines found in what the model was sent (empty: nothing leaked)."""
    return [line for line in hidden_lines(task) if any(line in text for text in requests)]
