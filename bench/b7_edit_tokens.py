"""B7: tokens the model must write for a small change to a big file, edit blocks against a whole-file answer.

A fixed fixture: a 1,500-line Python module and ten changes of three lines each spread over it. Both answer forms run
through the engine (a scripted backend answers exactly what each form needs: `blocks_for` with two lines of context
around each change, as models write them, or every file whole in the JSON form), with a verify command that fails the
first attempt, so each form pays for two attempts (a retry starts again from the base and resends every block).
Tokens are counted as in B8: `ceil(characters / 4)` of each answer. Target (issue #12): edits <= 0.25x whole files.
"""

from __future__ import annotations

import math
from pathlib import Path

import anyio

from bench.common import Figure, scratch_dir

__all__ = ["fixture", "run", "text_tokens"]

TARGET = 0.25
VERIFY = "test -e .b7-second || { touch .b7-second; echo 'AssertionError: first attempt'; exit 1; }"


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def fixture() -> tuple[str, str]:
    """(base, target): 300 five-line functions; ten of them, spread evenly, get three changed lines."""
    functions = [f"def step_{i}(value, factor={i}):\n    scaled = value * factor\n    shifted = scaled + {i}\n"
                 f"    return shifted\n\n" for i in range(300)]
    base = "".join(functions)
    target = list(functions)
    for i in range(15, 300, 30):
        target[i] = (f"def step_{i}(value, factor={i}):\n    scaled = float(value) * factor\n"
                     f"    shifted = round(scaled + {i}, 6)\n    return max(shifted, 0.0)\n\n")
    return base, "".join(target)


async def _tokens(project: Path, form: str, base: str, target: str) -> int:
    from engine import Engine, Project
    from engine.executor.edits import blocks_for, whole_file_answer
    from engine.testing.scripted import ScriptedBackend, use_backend

    (project / "pipeline.py").write_text(base)
    (project / ".b7-second").unlink(missing_ok=True)
    answer = (blocks_for(base, target, path="pipeline.py", context_lines=2) if form == "edits"
              else whole_file_answer({"pipeline.py": target}))
    backend = ScriptedBackend().reply(answer, answer)
    engine = Engine(Project.resolve(project))
    use_backend(engine, backend, num_ctx=65536)
    try:
        result = await engine.delegate(task="Make the ten marked steps work in floats", output_files=["pipeline.py"],
                                       answer_form=form, verify=VERIFY, max_attempts=2)
    finally:
        engine.close()
    assert result["state"] == "done" and (project / "pipeline.py").read_text() == target, result["error"]
    return text_tokens(answer) * len(backend.requests)


def run(quick: bool) -> list[Figure]:
    base, target = fixture()
    with scratch_dir("b7e") as edits_dir, scratch_dir("b7j") as json_dir:
        edits = anyio.run(_tokens, edits_dir, "edits", base, target)
        whole = anyio.run(_tokens, json_dir, "json", base, target)
    return [Figure("B7", "answer tokens, 10x3-line changes in 1,500 lines, 2 attempts", edits, whole, "tokens",
                   TARGET, target_text=f"<= {TARGET}",
                   note=f"edit blocks {edits} tokens against {whole} for whole files (ceil(chars/4), both attempts)")]
