"""engine/delegation/reading.py: an answer that holds a lone surrogate (a server's JSON may carry "\\ud800" alone)
is a retry with a message that says what is wrong, never an internal error (issue 19 point 7); answers are read
off the event loop, large ones in a worker process, with the same outcome (issue 19 point 4)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation.reading import PROCESS_ABOVE_BYTES, read_answer, read_answer_off_loop
from engine.executor.answers import AnswerError
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from tests.engine.executor.edits.test_apply_bounds import near_miss

LONE = "\ud83d"  # the first half of an emoji's surrogate pair, without its second half


@pytest.mark.parametrize("form", ["json", "edits"])
def test_a_lone_surrogate_in_an_answer_is_an_answer_error_naming_it_and_its_line(form: str) -> None:
    if form == "json":
        text = json.dumps({"files": [{"path": "a.py", "content": f"x = 1\ny = '{LONE}'\n"}]})
    else:
        text = f"a.py\n```\n<<<<<<< SEARCH\n=======\nx = 1\ny = '{LONE}'\n>>>>>>> REPLACE\n```\n"
    with pytest.raises(AnswerError, match=r"lone surrogate \(U\+D83D, line \d+\)") as caught:
        read_answer(form, text, outputs=["a.py"], bases={"a.py": None})
    assert "write the characters themselves" in str(caught.value)
    str(caught.value).encode("utf-8")  # the message itself goes back to the model: it must be valid text


@pytest.mark.anyio
@pytest.mark.parametrize("form", ["json", "edits"])
async def test_a_run_whose_first_answer_holds_a_lone_surrogate_retries_and_ends_done(
    engine: Engine, project_dir: Path, form: str
) -> None:
    if form == "json":
        bad, good = files_answer({"a.py": f"s = '{LONE}'\n"}), files_answer({"a.py": "s = 'ok'\n"})
    else:
        bad = f"a.py\n```\n<<<<<<< SEARCH\n=======\ns = '{LONE}'\n>>>>>>> REPLACE\n```\n"
        good = "a.py\n```\n<<<<<<< SEARCH\n=======\ns = 'ok'\n>>>>>>> REPLACE\n```\n"
    backend = ScriptedBackend().reply(bad, good)
    use_backend(engine, backend)
    with anyio.fail_after(20):
        result = await engine.delegate(task="t", output_files=["a.py"], answer_form=form, max_attempts=2)
    assert result["state"] == "done", result["error"]
    assert result["attempts"] == 2
    assert (project_dir / "a.py").read_text() == "s = 'ok'\n"
    retry = "\n".join(m.content for m in backend.requests[1].messages)
    assert "lone surrogate (U+D83D" in retry
    retry.encode("utf-8")  # the earlier answer is quoted back as valid text


SMALL_MISS = (b"total = 0\nfor value in values:\n    total += value\n",
              ("src/handlers.py\n```python\n<<<<<<< SEARCH\nfor amount in values:\n=======\nfor v in values:\n"
               ">>>>>>> REPLACE\n```\n"))


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["small, in a thread", "large, in a worker process"])
async def test_an_answer_read_off_the_loop_fails_with_the_message_read_answer_gives(case: str) -> None:
    base, answer = SMALL_MISS if case.startswith("small") else near_miss(400)
    assert (len(base) + len(answer) > PROCESS_ABOVE_BYTES) == case.startswith("large")
    bases: dict[str, bytes | None] = {"src/handlers.py": base}
    with pytest.raises(AnswerError) as direct:
        read_answer("edits", answer, outputs=["src/handlers.py"], bases=bases)
    with anyio.fail_after(60), pytest.raises(AnswerError) as off_loop:
        await read_answer_off_loop("edits", answer, outputs=["src/handlers.py"], bases=bases)
    assert str(off_loop.value) == str(direct.value)
    assert "closest lines" in str(off_loop.value)


@pytest.mark.anyio
async def test_a_large_answer_read_in_a_worker_process_gives_the_bytes_read_answer_gives() -> None:
    base, answer = near_miss(400)
    answer = answer.replace("amount", "value", 1)  # the SEARCH now matches: the block applies
    assert len(answer) + len(base) > PROCESS_ABOVE_BYTES
    bases: dict[str, bytes | None] = {"src/handlers.py": base}
    with anyio.fail_after(60):
        got = await read_answer_off_loop("edits", answer, outputs=["src/handlers.py"], bases=bases)
    assert got == read_answer("edits", answer, outputs=["src/handlers.py"], bases=bases)
    assert got["src/handlers.py"] != base
