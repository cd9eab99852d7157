"""A run never sends a prompt that the server would cut silently, and thinking is asked for only when wanted.

The Ollama runs use the Ollama double (Ollama cannot be installed here; engine/testing/ollama_double/behaviour.py
imitates today's and older servers from Ollama's source). A model with a small `chars_per_token` has a tokenizer
denser than the engine's estimate, the case where an estimate alone would let a prompt through that does not fit.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation.metrics import read_log
from engine.errors import InvalidArgument
from engine.executor.backends.ollama import OllamaBackend
from engine.testing.ollama_double import FakeModel, OllamaDouble
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend

pytestmark = pytest.mark.anyio


def _model(chars_per_token: float, **fields: object) -> FakeModel:
    return FakeModel("coder:7b", context_length=32768, chars_per_token=chars_per_token, **fields)  # type: ignore[arg-type]


async def _delegate(engine: Engine, double: OllamaDouble, *, num_ctx: int, **fields: object) -> dict[str, object]:
    backend = OllamaBackend(double.url)
    use_backend(engine, backend, model="coder:7b", num_ctx=num_ctx)
    try:
        with anyio.fail_after(30):
            return await engine.delegate(task=str(fields.pop("task", "Write the module")),
                                         output_files=["out.py"], **fields)  # type: ignore[arg-type]
    finally:
        await backend.aclose()


async def test_a_prompt_todays_ollama_finds_too_long_fails_the_run_with_numbers_and_writes_nothing(
    engine: Engine, project_dir: Path,
) -> None:
    (project_dir / "dense.py").write_text("x" * 6000)  # the engine estimates 2000 tokens; this tokenizer counts 6000
    with OllamaDouble(models=[_model(1)]) as double:
        result = await _delegate(engine, double, num_ctx=4096, context_files=["dense.py"])
        assert double.truncations == [] and len(double.bodies("/api/chat")) == 1  # refused, not cut; not retried
    overflow = result["prompt_overflow"]
    assert result["state"] == "failed" and not (project_dir / "out.py").exists()
    assert overflow == {"prompt_tokens": overflow["prompt_tokens"], "exact": False, "num_ctx": 4096,  # type: ignore[index]
                        "answer_room": 512, "refused_by": "server"}
    assert "num_ctx 4096" in str(result["error"]) and "exceeds the context length" in str(result["error"])
    assert read_log(engine.project.delegation_log).records[-1]["prompt_overflow"] == overflow


@pytest.mark.answer_form_json
@pytest.mark.parametrize(("version", "trimmed"), [("0.12.5", True), ("0.33.0", False)])
async def test_an_ollama_that_would_cut_silently_gets_context_packed_with_a_margin(
    engine: Engine, project_dir: Path, version: str, trimmed: bool,
) -> None:
    (project_dir / "big.py").write_text("ab\n" * 2000)  # 6000 characters, 2000 estimated tokens
    with OllamaDouble(models=[_model(2)], version=version) as double:
        double.responder = lambda body: files_answer({"out.py": "pass\n"})
        result = await _delegate(engine, double, num_ctx=4096, context_files=["big.py"])
        assert double.truncations == []  # with the margin, not even a tokenizer twice as dense gets cut
    assert result["state"] == "done"
    assert bool(result["files_skipped"]) is trimmed  # today's server refuses overlong prompts: no margin needed


async def test_an_old_ollama_gets_a_prompt_refused_up_front_on_the_estimate_and_is_told_why(
    engine: Engine,
) -> None:
    with OllamaDouble(models=[_model(4)], version="0.12.5") as double:
        result = await _delegate(engine, double, num_ctx=2048, task="Write the module. " + "Details. " * 400)
        assert double.bodies("/api/chat") == []
    assert result["state"] == "failed" and result["prompt_overflow"]["refused_by"] == "estimate"  # type: ignore[index]
    error = str(result["error"])
    assert "Ollama 0.12.5 ignores `truncate: false`" in error and "num_ctx 2048" in error


async def test_a_prompt_the_models_tokenizer_finds_too_long_is_refused_before_sending(
    engine: Engine, project_dir: Path,
) -> None:
    backend = ScriptedBackend(prompt_exact=True, prompt_padding=5000)
    use_backend(engine, backend, num_ctx=4096)
    with anyio.fail_after(10):
        result = await engine.delegate(task="x", output_files=["out.py"])
    assert result["state"] == "failed" and backend.requests == []
    overflow = result["prompt_overflow"]
    assert overflow["refused_by"] == "tokenizer" and overflow["exact"] and overflow["prompt_tokens"] > 5000  # type: ignore[index]
    assert "counted with the model's tokenizer" in str(result["error"])


@pytest.mark.answer_form_json
async def test_an_estimate_over_the_limit_does_not_stop_a_run_the_server_can_check(engine: Engine) -> None:
    backend = ScriptedBackend(prompt_exact=False, prompt_padding=5000)
    use_backend(engine, backend, num_ctx=4096)
    with anyio.fail_after(10):
        result = await engine.delegate(task="x", output_files=["out.py"])
    assert result["state"] == "done" and len(backend.requests) == 1


THINKER = FakeModel("coder:7b", context_length=32768, capabilities=("completion", "thinking"))


@pytest.mark.answer_form_json
async def test_a_run_tells_a_thinking_model_not_to_think_unless_asked(engine: Engine) -> None:
    with OllamaDouble(models=[THINKER]) as double:
        double.responder = lambda body: files_answer({"out.py": "pass\n"})
        quiet = await _delegate(engine, double, num_ctx=4096)
        thoughtful = await _delegate(engine, double, num_ctx=4096, think="low")
        bodies = double.bodies("/api/chat")
    assert [b["think"] for b in bodies] == [False, "low"]
    assert quiet["thinking_tokens"] == 0 and thoughtful["thinking_tokens"] > 0
    assert thoughtful["state"] == "done" and thoughtful["tokens_generated"] > thoughtful["thinking_tokens"]
    # The answer gets what the context leaves, not a fixed share; its floor doubles when the model may think first.
    assert all(b["options"]["num_predict"] > 3000 for b in bodies)
    floors = [engine.run_view(str(r["run_id"]))["data"]["answer_floor"] for r in (quiet, thoughtful)]
    assert floors[1] == 2 * floors[0]
    stats = engine.stats()
    assert stats["thinking_tokens"] == thoughtful["thinking_tokens"]
    assert stats["by_model"]["coder:7b"]["thinking_tokens"] == thoughtful["thinking_tokens"]


async def test_an_answer_cut_while_thinking_says_so(engine: Engine) -> None:
    with OllamaDouble(models=[THINKER]) as double:
        double.reply(files_answer({"out.py": "pass\n"}), thinking="hmm " * 5000)
        result = await _delegate(engine, double, num_ctx=4096, think=True, max_attempts=1)
        num_predict = double.bodies("/api/chat")[-1]["options"]["num_predict"]
    assert result["state"] == "failed" and "thinking" in str(result["error"])
    assert result["thinking_tokens"] == result["tokens_generated"] == num_predict


async def test_think_must_be_a_flag_or_a_level(engine: Engine) -> None:
    use_backend(engine, ScriptedBackend())
    with pytest.raises(InvalidArgument, match="think"):
        await engine.delegate(task="x", output_files=["out.py"], think="extreme")
