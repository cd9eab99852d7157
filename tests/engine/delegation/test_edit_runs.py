"""Delegations in the edit-block form, end to end through the engine with a scripted backend: the model's blocks
are applied exactly to real-size files, a block that does not apply is quoted back with the file's closest lines,
and when the attempts run out nothing is left changed."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.executor.backends.ollama import OllamaBackend
from engine.executor.edits import blocks_for
from engine.executor.forms import choose_form
from engine.testing.ollama_double import OllamaDouble
from engine.testing.scripted import ScriptedBackend, use_backend
from tests.markers import needs_embedded

pytestmark = pytest.mark.anyio


def _module(functions: int, *, prefix: str = "f") -> str:
    return "".join(f"def {prefix}_{i}(value):\n    result = value * {i}\n    return result + {i}\n\n\n"
                   for i in range(functions))


async def test_a_docstring_delegation_on_a_1500_line_file_applies_exactly(engine: Engine, project_dir: Path) -> None:
    base = _module(300)  # 1,500 lines
    target = base
    for i in range(0, 300, 30):  # ten functions get a docstring
        target = target.replace(f"def f_{i}(value):\n", f'def f_{i}(value):\n    """Scale value by {i}."""\n', 1)
    (project_dir / "big.py").write_text(base)
    answer = "Here are the edits:\n\n" + blocks_for(base, target, path="big.py")
    backend = ScriptedBackend().reply(answer)
    use_backend(engine, backend, num_ctx=32768)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Add docstrings", task_type="docs", output_files=["big.py"],
                                       answer_form="edits", verify="python3 -c 'import big'")
    assert result["state"] == "done", result["error"]
    assert (project_dir / "big.py").read_text() == target
    [changed] = result["files"]
    assert (changed["added"], changed["removed"]) == (10, 0) and "f_30" in changed["changed"]
    request = backend.requests[0]
    assert request.schema is None  # no code inside JSON
    assert "<<<<<<< SEARCH" in request.messages[0].content and base in request.messages[1].content
    assert len(answer) < len(target) / 10  # the model wrote the change, not the file


async def test_a_rename_across_five_files_applies_in_one_run(engine: Engine, project_dir: Path) -> None:
    bases, targets = {}, {}
    for n in range(5):
        text = "from core import load_items\n\n\n" + _module(60, prefix=f"m{n}") + "items = load_items()\n"
        bases[f"pkg/m{n}.py"] = text
        targets[f"pkg/m{n}.py"] = text.replace("load_items", "fetch_items")
        (project_dir / "pkg").mkdir(exist_ok=True)
        (project_dir / f"pkg/m{n}.py").write_text(text)
    answer = "\n".join(blocks_for(bases[p], targets[p], path=p) for p in bases)
    use_backend(engine, ScriptedBackend().reply(answer), num_ctx=32768)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Rename load_items to fetch_items", task_type="refactor",
                                       output_files=list(bases), answer_form="edits")
    assert result["state"] == "done", result["error"]
    assert {p: (project_dir / p).read_text() for p in bases} == targets
    assert all(f["added"] == f["removed"] == 2 for f in result["files"])


async def test_a_search_that_does_not_match_is_quoted_with_the_closest_lines_and_retried(
    engine: Engine, project_dir: Path,
) -> None:
    base = _module(20)
    (project_dir / "mod.py").write_text(base)
    wrong = ("mod.py\n```python\n<<<<<<< SEARCH\ndef f_7(value):\n    result = value * 70\n=======\n"
             "def f_7(value):\n    result = value * 7.0\n>>>>>>> REPLACE\n```\n")
    right = blocks_for(base, base.replace("value * 7\n", "value * 7.0\n"), path="mod.py")
    backend = ScriptedBackend().reply(wrong, right)
    use_backend(engine, backend, num_ctx=16384)
    with anyio.fail_after(20):
        result = await engine.delegate(task="Use a float for f_7", output_files=["mod.py"], answer_form="edits")
    assert result["state"] == "done" and result["attempts"] == 2
    retry = backend.requests[1].messages[-1].content
    assert "value * 70" in retry  # the failing block, quoted
    assert "result = value * 7" in retry and "starts again from the files exactly as the first message" in retry
    assert backend.requests[1].messages[:2] == backend.requests[0].messages[:2]  # the base stays in the prompt
    assert "value * 7.0" in (project_dir / "mod.py").read_text()


@pytest.mark.parametrize(
    "answer",
    [
        "mod.py\n```\n<<<<<<< SEARCH\nno such line\n=======\nx\n>>>>>>> REPLACE\n```\n",  # no match
        "mod.py\n```\n<<<<<<< SEARCH\n    return result + 1\n=======\nx\n>>>>>>> REPLACE\n```\n",  # applies; see below
        "mod.py\n```\n<<<<<<< SEARCH\n\n\n=======\nx\n>>>>>>> REPLACE\n```\n",  # blank lines: several matches
        "other.py\n```\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n```\n",  # not a requested output
        "mod.py\n```\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n```\n",  # empty SEARCH on an existing file
        "mod.py\n```\n<<<<<<< SEARCH\ndef f_1(value):\n=======\ndef f_1(v):\n",  # cut off by the token limit
    ],
    ids=["no-match", "a-good-block-beside-a-bad-one", "several-matches", "other-path", "empty-search", "cut-off"],
)
async def test_every_mismatch_is_retried_and_leaves_the_file_untouched_when_attempts_run_out(
    engine: Engine, project_dir: Path, answer: str,
) -> None:
    base = _module(3)
    (project_dir / "mod.py").write_text(base)
    # The block that applies gets a second one for a path not requested: all or nothing, so neither is written.
    bad = answer if "return result + 1" not in answer else answer + answer.replace("mod.py", "nope.py")
    backend = ScriptedBackend().reply(bad, bad)
    use_backend(engine, backend, num_ctx=8192)
    with anyio.fail_after(20):
        result = await engine.delegate(task="x", output_files=["mod.py"], answer_form="edits", max_attempts=2)
    assert result["state"] == "failed" and result["attempts"] == 2
    assert "could not be applied" in backend.requests[1].messages[-1].content
    assert (project_dir / "mod.py").read_text() == base
    assert not (project_dir / "other.py").exists() and not (project_dir / "nope.py").exists()


async def test_crlf_a_bom_and_no_final_newline_survive_an_edit(engine: Engine, project_dir: Path) -> None:
    (project_dir / "win.txt").write_bytes(b"\xef\xbb\xbfalpha\r\nbeta\r\ngamma")
    answer = "win.txt\n```\n<<<<<<< SEARCH\nbeta\n=======\nBETA\n>>>>>>> REPLACE\n```\n"
    use_backend(engine, ScriptedBackend().reply(answer), num_ctx=8192)
    with anyio.fail_after(20):
        result = await engine.delegate(task="upper-case beta", output_files=["win.txt"], answer_form="edits")
    assert result["state"] == "done"
    assert (project_dir / "win.txt").read_bytes() == b"\xef\xbb\xbfalpha\r\nBETA\r\ngamma"


async def test_an_output_that_is_not_utf8_is_refused_before_the_model_is_asked(
    engine: Engine, project_dir: Path,
) -> None:
    (project_dir / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    backend = ScriptedBackend()
    use_backend(engine, backend, num_ctx=8192)
    with anyio.fail_after(20):
        result = await engine.delegate(task="x", output_files=["blob.bin"], answer_form="edits")
    assert result["state"] == "failed" and "not valid UTF-8" in str(result["error"]) and backend.requests == []
    assert (project_dir / "blob.bin").read_bytes() == b"\xff\xfe\x00binary"


async def test_files_to_change_that_cannot_fit_the_context_are_refused_up_front_with_how_to_fix_it(
    engine: Engine, project_dir: Path,
) -> None:
    (project_dir / "huge.py").write_text(_module(400))
    backend = ScriptedBackend()
    use_backend(engine, backend, num_ctx=4096)
    with anyio.fail_after(20):
        result = await engine.delegate(task="x", output_files=["huge.py"], answer_form="edits")
    assert result["state"] == "failed" and backend.requests == []
    error = str(result["error"])
    assert "files to change" in error and "num_ctx 4096" in error and "LOCAL_LLM_NUM_CTX" in error
    assert result["prompt_overflow"]["num_ctx"] == 4096  # type: ignore[index]


async def test_the_default_form_is_edits_for_a_model_with_no_rule_against_it(engine: Engine, project_dir: Path) -> None:
    (project_dir / "a.py").write_text("x = 1\n")
    answer = "a.py\n```\n<<<<<<< SEARCH\nx = 1\n=======\nx = 2\n>>>>>>> REPLACE\n```\n"
    backend = ScriptedBackend().reply(answer)
    use_backend(engine, backend)
    with anyio.fail_after(20):
        result = await engine.delegate(task="x", output_files=["a.py"])
    assert result["state"] == "done" and (project_dir / "a.py").read_text() == "x = 2\n"
    assert choose_form(backend="embedded", model="m").form == "whole"
    assert choose_form(backend="ollama", model="m").form == "edits"
    run = engine.run_view(result["run_id"])
    assert run["data"]["answer_form"] == "edits" and "default" in run["data"]["answer_form_rule"]


@needs_embedded
async def test_the_edit_form_runs_end_to_end_on_the_embedded_model(engine: Engine, project_dir: Path) -> None:
    """The tiny model's edits may be poor; the prompt, the parsing, the retry and the rollback are the real ones."""
    base = "def greet(name):\n    return 'hello ' + name\n"
    (project_dir / "greet.py").write_text(base)
    verify = "python3 -c 'import greet; assert greet.greet(\"x\") == \"Hello, x!\"'"
    with anyio.fail_after(300):
        await engine.enable(llm=True, backend="embedded", answer_form="edits")
        result = await engine.delegate(task="Make greet return 'Hello, NAME!'", output_files=["greet.py"],
                                       verify=verify, max_attempts=2)
    events = [e for e in engine.store.events(result["run_id"])]
    packed = next(e for e in events if e.event == "packed")
    assert packed.payload["answer_form"] == "edits"
    assert result["state"] in ("done", "failed") and result["tokens_generated"] > 0
    if result["state"] == "failed":
        assert (project_dir / "greet.py").read_text() == base  # nothing of a failed run is left behind
        failures = [e for e in events if e.event in ("generation_failed", "verify_failed")]
        assert len(failures) == 2  # both attempts were tried and each failure was recorded for the retry
    else:
        assert "Hello" in (project_dir / "greet.py").read_text()


async def test_through_ollama_the_edit_form_sends_no_schema_and_applies_the_blocks(
    engine: Engine, project_dir: Path, ollama_double: OllamaDouble,
) -> None:
    (project_dir / "cfg.py").write_text("DEBUG = True\nPORT = 80\n")
    ollama_double.reply("cfg.py\n```python\n<<<<<<< SEARCH\nPORT = 80\n=======\nPORT = 8080\n>>>>>>> REPLACE\n```\n")
    backend = OllamaBackend(ollama_double.url)
    use_backend(engine, backend, model="deepseek-coder:6.7b", num_ctx=8192)
    try:
        with anyio.fail_after(20):
            result = await engine.delegate(task="Use port 8080", output_files=["cfg.py"], answer_form="edits")
    finally:
        await backend.aclose()
    assert result["state"] == "done" and (project_dir / "cfg.py").read_text() == "DEBUG = True\nPORT = 8080\n"
    body = ollama_double.bodies("/api/chat")[-1]
    assert "format" not in body and "DEBUG = True\nPORT = 80" in body["messages"][1]["content"]
