"""Thinking on the Ollama backend, against the Ollama double.

Ollama cannot be installed where these tests run, so the double imitates it from its source
(engine/testing/ollama_double/behaviour.py names each rule's file and commit): a model with the `thinking` capability
thinks unless told `think: false`, GPT-OSS only takes levels, a server older than v0.9.0 ignores `think` and leaves
the reasoning inline, and thinking spends num_predict.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from engine.executor.backends.base import BackendError, ChatMessage, GenerateRequest
from engine.executor.backends.ollama import OllamaBackend
from engine.executor.backends.ollama_features import ModelTraits, think_value
from engine.executor.thinking import split_thinking
from engine.testing.ollama_double import FakeModel, OllamaDouble
from engine.testing.ollama_double.models import split_pieces

pytestmark = pytest.mark.anyio

THINKER = FakeModel("qwen3:8b", family="qwen3", capabilities=("completion", "tools", "thinking"))
GPT_OSS = FakeModel("gpt-oss:20b", family="gptoss", capabilities=("completion", "tools", "thinking"))
PLAIN = FakeModel("qwen2.5-coder:7b", family="qwen2", capabilities=("completion", "tools", "insert"))
REASONING = "First I read the task. Then I list the files and write each one with care."


@pytest.fixture
async def double() -> AsyncIterator[OllamaDouble]:
    with OllamaDouble(models=[THINKER, GPT_OSS, PLAIN]) as d:
        yield d


async def _generate(double: OllamaDouble, model: str, **fields: object) -> tuple[object, dict[str, object]]:
    backend = OllamaBackend(double.url)
    try:
        with anyio.fail_after(10):
            result = await backend.generate(GenerateRequest(
                model=model, messages=[ChatMessage("user", "write f")], **fields))  # type: ignore[arg-type]
    finally:
        await backend.aclose()
    return result, double.bodies("/api/chat")[-1]


async def test_mechanical_work_tells_a_thinking_model_not_to_think(double: OllamaDouble) -> None:
    double.reply("def f(): pass", thinking=REASONING)
    result, body = await _generate(double, "qwen3:8b")
    assert body["think"] is False
    assert result.text == "def f(): pass" and result.thinking_tokens == 0  # type: ignore[attr-defined]


async def test_thinking_asked_for_is_counted_and_never_taken_as_the_answer(double: OllamaDouble) -> None:
    double.reply("def f(): pass", thinking=REASONING)
    seen: list[str] = []
    backend = OllamaBackend(double.url)
    try:
        with anyio.fail_after(10):
            result = await backend.generate(GenerateRequest(
                model="qwen3:8b", messages=[ChatMessage("user", "write f")], think="high"), on_token=seen.append)
    finally:
        await backend.aclose()
    assert double.bodies("/api/chat")[-1]["think"] == "high"
    assert result.text == "def f(): pass" and "First I read" not in result.text
    thought = len(split_pieces(REASONING))
    assert result.thinking_tokens == thought
    assert result.completion_tokens == thought + len(split_pieces("def f(): pass"))
    assert "".join(seen).startswith(REASONING)  # thinking streams as progress, so a watchdog sees a live model


async def test_a_model_that_only_takes_levels_gets_the_lowest_for_mechanical_work(double: OllamaDouble) -> None:
    double.reply("ok", thinking="short")
    result, body = await _generate(double, "gpt-oss:20b")
    assert body["think"] == "low"
    assert result.text == "ok" and result.thinking_tokens == 1  # type: ignore[attr-defined]


async def test_a_model_that_cannot_think_gets_no_think_field_and_a_clear_error_when_asked(
    double: OllamaDouble,
) -> None:
    _, body = await _generate(double, "qwen2.5-coder:7b")
    assert "think" not in body
    with pytest.raises(BackendError, match="cannot think") as caught:
        await _generate(double, "qwen2.5-coder:7b", think=True)
    assert not caught.value.retryable


async def test_the_double_refuses_thinking_for_a_model_without_the_capability_as_ollama_does(
    double: OllamaDouble,
) -> None:
    async with httpx.AsyncClient(base_url=double.url) as client:
        answer = await client.post("/api/chat", json={"model": "qwen2.5-coder:7b", "think": True, "stream": False,
                                                      "messages": [{"role": "user", "content": "x"}]})
        bad = await client.post("/api/chat", json={"model": "qwen3:8b", "think": "extreme", "stream": False,
                                                   "messages": [{"role": "user", "content": "x"}]})
        default = await client.post("/api/chat", json={"model": "qwen3:8b", "stream": False,
                                                       "messages": [{"role": "user", "content": "x"}]})
    assert answer.status_code == 400 and answer.json()["error"] == '"qwen2.5-coder:7b" does not support thinking'
    assert bad.status_code == 400 and "invalid think value" in bad.json()["error"]
    assert default.json()["message"]["thinking"]  # left out, a thinking model thinks


async def test_thinking_spends_the_answers_token_budget(double: OllamaDouble) -> None:
    double.reply("def f(): pass", thinking=REASONING)
    result, _ = await _generate(double, "qwen3:8b", think=True, max_tokens=5)
    assert result.done_reason == "length" and result.text == ""  # type: ignore[attr-defined]
    assert result.thinking_tokens == 5 == result.completion_tokens  # type: ignore[attr-defined]


async def test_an_ollama_older_than_0_9_leaves_reasoning_inline_and_it_is_split_off() -> None:
    with OllamaDouble(models=[THINKER], version="0.8.0") as double:
        double.reply('{"files": []}', thinking=REASONING)
        result, body = await _generate(double, "qwen3:8b")
    assert body["think"] is False  # sent, and ignored by a server that does not know the field
    assert result.text.strip() == '{"files": []}'  # type: ignore[attr-defined]
    assert result.thinking_tokens > 0  # type: ignore[attr-defined]


def test_think_values_follow_what_the_model_can_do() -> None:
    thinker, oss = ModelTraits(("completion", "thinking"), "qwen3"), ModelTraits(("completion", "thinking"), "gptoss")
    unknown = ModelTraits(None)
    assert think_value(False, thinker, model="m") is False
    assert think_value("max", oss, model="m") == "high" and think_value(True, oss, model="m") == "medium"
    assert think_value(False, unknown, model="m") is False  # an old server ignores it; harmless
    with pytest.raises(BackendError, match="not a thinking level"):
        think_value("extreme", thinker, model="m")


@pytest.mark.parametrize(
    ("text", "thinking", "content"),
    [
        ("<think>plan</think>\n{}", "plan", "{}"),
        ("  <think>\nplan\n</think>{}", "plan", "{}"),
        ("<think>cut while thinking", "cut while thinking", ""),
        ('{"a": "<think>x</think>"}', "", '{"a": "<think>x</think>"}'),
        ("plain", "", "plain"),
    ],
)
def test_a_leading_think_block_is_thinking_and_nothing_else_is(text: str, thinking: str, content: str) -> None:
    assert split_thinking(text) == (thinking, content)
