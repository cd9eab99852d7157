"""The loop guard in a generation and in a run (generation.generate, steps), through the real Ollama backend against
the Ollama double (a faithful copy of its HTTP API: engine/testing/ollama_double/): an answer that falls into a loop is
stopped long before its end, and the attempt ends unusable with a retry that shows the model its answer up to the loop.

The looping answer is the embedded model's own (tests/engine/delegation/loops/test-roman.txt), made endless with more
copies of its last block; the double streams it a piece at a time, so the stop is the guard's, not the answer's end."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation.generation import REPEATING, Slots, generate
from engine.delegation.pace import PaceLimits
from engine.delegation.repetition import RepetitionLimits, find_repetition
from engine.executor.backends.base import ChatMessage, GenerateRequest, GenerateResult
from engine.executor.backends.ollama import OllamaBackend
from engine.progress import no_progress
from engine.testing.ollama_double import Fault, OllamaDouble
from engine.testing.ollama_double.models import split_pieces
from engine.testing.scripted import use_backend

MODEL = "deepseek-coder:6.7b"
ROMAN = (Path(__file__).parent / "loops" / "test-roman.txt").read_text()
_LOOP = find_repetition(ROMAN)
assert _LOOP is not None
LAST_BLOCK = ROMAN[_LOOP.start:_LOOP.start + _LOOP.block_chars]
ENDLESS = ROMAN[:_LOOP.start] + LAST_BLOCK * 400
QUICK_TICKS = PaceLimits(first_token_s=0, min_tokens_per_s=0, window_s=0.5)  # looks every 50 ms, ends nothing


def _ends_in_one_copy(text: str) -> bool:
    """`text` ends with one copy of the loop's block (the copies may start at any of its lines), not two."""
    size = len(LAST_BLOCK)
    last = text[-size:]
    return last in LAST_BLOCK * 2 and text[-2 * size:-size] != last and find_repetition(text) is None


async def _generate(double: OllamaDouble, *, repeats: RepetitionLimits | None = None) -> GenerateResult:
    backend = OllamaBackend(double.url)
    try:
        request = GenerateRequest(model=MODEL, messages=[ChatMessage("user", "write test_roman.py")],
                                  num_ctx=65536, max_tokens=60000)
        return await generate(backend, request, slots=Slots(), progress=no_progress, attempt=1, total=1,
                              limits=QUICK_TICKS, repeats=repeats)
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_a_looping_answer_is_stopped_with_one_copy_of_its_block_kept(ollama_double: OllamaDouble) -> None:
    ollama_double.reply(ENDLESS)
    ollama_double.fault(Fault.trickle(0.001))  # a piece a millisecond: the whole would take about a minute
    with anyio.fail_after(60):
        result = await _generate(ollama_double)
    assert result.done_reason == REPEATING
    text = result.text
    assert ENDLESS.startswith(text) and _ends_in_one_copy(text)
    assert result.completion_tokens < len(split_pieces(ENDLESS)) // 4
    assert result.prompt_tokens > 0


@pytest.mark.anyio
async def test_with_the_guard_off_the_same_answer_streams_to_its_end(ollama_double: OllamaDouble) -> None:
    ollama_double.reply(ROMAN)
    with anyio.fail_after(60):
        result = await _generate(ollama_double, repeats=RepetitionLimits(times=0))
    assert result.done_reason == "stop" and result.text == ROMAN


@pytest.mark.anyio
async def test_a_run_whose_answer_loops_retries_with_the_answer_up_to_the_loop_and_passes(
    engine: Engine, ollama_double: OllamaDouble, project_dir: Path,
) -> None:
    backend = OllamaBackend(ollama_double.url)
    use_backend(engine, backend, model=MODEL)
    ollama_double.reply(ENDLESS)
    ollama_double.fault(Fault.trickle(0.001))
    ollama_double.reply("test_roman.py\n```python\nimport unittest\n```\n")
    try:
        with anyio.fail_after(90):
            result = await engine.delegate(task="write test_roman.py", output_files=["test_roman.py"],
                                           max_attempts=2)
    finally:
        await backend.aclose()
    assert result["state"] == "done" and result["attempts"] == 2
    assert (project_dir / "test_roman.py").read_text() == "import unittest\n"
    [failed] = [e for e in engine.store.events(result["run_id"]) if e.event == "generation_failed"]
    assert "fell into a loop" in failed.payload["detail"]
    retry = ollama_double.bodies("/api/chat")[-1]["messages"]
    shown = [m["content"] for m in retry if m["role"] == "assistant"]
    assert any(_ends_in_one_copy(c) for c in shown), [c[-300:] for c in shown]
