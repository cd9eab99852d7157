"""The Ollama backend against the Ollama double (a real HTTP server speaking Ollama's documented API)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest

from engine.executor.backends.base import BackendError, BackendUnavailable, ChatMessage, GenerateRequest, ModelMissing
from engine.executor.backends.ollama import OllamaBackend, canonical_model, chat_body, ollama_base_url
from engine.testing.ollama_double import Fault, OllamaDouble

pytestmark = pytest.mark.anyio

SCHEMA = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}


@pytest.fixture
async def backend(ollama_double: OllamaDouble) -> AsyncIterator[OllamaBackend]:
    b = OllamaBackend(ollama_double.url)
    try:
        yield b
    finally:
        await b.aclose()


def request(text: str = "write a function", **fields: object) -> GenerateRequest:
    return GenerateRequest(model="deepseek-coder:6.7b", messages=[ChatMessage("user", text)], **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:9999", "http://127.0.0.1:9999"),
        (":9999", "http://127.0.0.1:9999"),
        ("gpu-box:8000", "http://gpu-box:8000"),
        ("https://ollama.example.com", "https://ollama.example.com:443"),
        ("http://10.0.0.2:11434/", "http://10.0.0.2:11434"),
    ],
)
def test_ollama_host_forms_become_base_urls(monkeypatch: pytest.MonkeyPatch, host: str | None, url: str) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    if host is not None:
        monkeypatch.setenv("OLLAMA_HOST", host)
    assert ollama_base_url() == url


def test_a_name_without_a_tag_means_latest() -> None:
    assert canonical_model("llama3") == "llama3:latest"
    assert canonical_model("deepseek-coder:33b") == "deepseek-coder:33b"
    assert canonical_model("hf.co/user/repo") == "hf.co/user/repo:latest"


async def test_version_tags_ps_and_show_are_read(backend: OllamaBackend, ollama_double: OllamaDouble) -> None:
    assert await backend.version() == ollama_double.version
    assert [m.name for m in await backend.models()] == ["deepseek-coder:6.7b"]
    assert await backend.loaded() == []
    assert await backend.context_length("deepseek-coder:6.7b") == 16384
    assert await backend.has_model("deepseek-coder:6.7b")
    assert not await backend.has_model("deepseek-coder:33b")


async def test_version_is_none_when_nothing_answers() -> None:
    backend = OllamaBackend("http://127.0.0.1:9")
    try:
        assert await backend.version() is None
        with pytest.raises(BackendUnavailable, match="ollama serve"):
            await backend.models()
    finally:
        await backend.aclose()


async def test_pull_streams_progress_and_the_model_appears(backend: OllamaBackend, ollama_double: OllamaDouble) -> None:
    seen: list[tuple[float, float | None, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        seen.append((done, total, message))

    await backend.pull("deepseek-coder:33b", progress=progress)
    assert await backend.has_model("deepseek-coder:33b")
    with_totals = [s for s in seen if s[1]]
    assert with_totals and with_totals[-1][0] == with_totals[-1][1]  # the last layer reached 100 %
    assert any("success" in s[2] for s in seen)
    assert ollama_double.bodies("/api/pull") == [{"model": "deepseek-coder:33b", "stream": True}]


async def test_pull_of_a_model_the_registry_lacks_raises_model_missing(backend: OllamaBackend) -> None:
    with pytest.raises(ModelMissing, match="file does not exist"):
        await backend.pull("no-such-model:1b", progress=_ignore)


async def test_load_and_unload_use_keep_alive_and_num_ctx(backend: OllamaBackend, ollama_double: OllamaDouble) -> None:
    await backend.load("deepseek-coder:6.7b", num_ctx=8192, keep_alive=-1)
    [loaded] = await backend.loaded()
    assert loaded.context_length == 8192
    assert ollama_double.loaded["deepseek-coder:6.7b"].keep_alive is None  # negative: forever
    await backend.unload("deepseek-coder:6.7b")
    assert await backend.loaded() == []
    assert [b.get("keep_alive") for b in ollama_double.bodies("/api/generate")] == [-1, 0]


async def test_generate_streams_tokens_and_reports_counts_and_durations(
    backend: OllamaBackend, ollama_double: OllamaDouble
) -> None:
    ollama_double.reply('{"code": "def add(a, b):\\n    return a + b"}', prompt_eval_count=42, eval_count=17)
    pieces: list[str] = []
    result = await backend.generate(request(schema=SCHEMA, num_ctx=8192, seed=3), on_token=pieces.append)
    assert json.loads(result.text) == {"code": "def add(a, b):\n    return a + b"}
    assert "".join(pieces) == result.text and len(pieces) > 1
    assert (result.prompt_tokens, result.completion_tokens, result.done_reason) == (42, 17, "stop")
    assert result.total_seconds > 0 and result.prompt_seconds and result.eval_seconds
    [body] = ollama_double.bodies("/api/chat")
    assert body["format"] == SCHEMA and body["stream"] is True
    assert body["options"]["num_ctx"] == 8192 and body["options"]["seed"] == 3


async def test_the_same_num_ctx_never_reloads_and_a_new_one_does(
    backend: OllamaBackend, ollama_double: OllamaDouble
) -> None:
    await backend.load("deepseek-coder:6.7b", num_ctx=8192, keep_alive="10m")
    for _ in range(3):
        await backend.generate(request(num_ctx=8192))
    assert ollama_double.load_count == 1
    await backend.generate(request(num_ctx=4096))
    assert ollama_double.load_count == 2


async def test_session_keep_alive_is_sent_with_every_generation(ollama_double: OllamaDouble) -> None:
    backend = OllamaBackend(ollama_double.url, keep_alive="60m")
    try:
        await backend.generate(request())
        await backend.generate(request(keep_alive=0))
    finally:
        await backend.aclose()
    assert [b["keep_alive"] for b in ollama_double.bodies("/api/chat")] == ["60m", 0]
    assert "deepseek-coder:6.7b" not in ollama_double.loaded  # keep_alive 0 unloaded it after the answer


async def test_a_length_stop_is_reported(backend: OllamaBackend, ollama_double: OllamaDouble) -> None:
    ollama_double.reply("def f(", done_reason="length")
    assert (await backend.generate(request())).done_reason == "length"


async def test_an_unknown_model_raises_model_missing(backend: OllamaBackend) -> None:
    with pytest.raises(ModelMissing, match="try pulling it first"):
        await backend.generate(GenerateRequest(model="nope:1b", messages=[ChatMessage("user", "x")]))


async def test_http_500_is_a_retryable_backend_error(backend: OllamaBackend, ollama_double: OllamaDouble) -> None:
    ollama_double.fault(Fault.http(500, "llama runner process has terminated"))
    with pytest.raises(BackendError, match="runner process") as caught:
        await backend.generate(request())
    assert caught.value.retryable


async def test_a_full_queue_is_backend_unavailable(backend: OllamaBackend, ollama_double: OllamaDouble) -> None:
    ollama_double.fault(Fault.queue_full())
    with pytest.raises(BackendUnavailable, match="busy") as caught:
        await backend.generate(request())
    assert caught.value.retryable


async def test_a_connection_reset_mid_stream_is_backend_unavailable(
    backend: OllamaBackend, ollama_double: OllamaDouble
) -> None:
    ollama_double.reply("one two three four five")
    ollama_double.fault(Fault.reset_mid_stream(after_chunks=2))
    with pytest.raises(BackendUnavailable, match="connection to Ollama"):
        await backend.generate(request())
    assert (await backend.generate(request())).text  # the server itself is fine afterwards


async def test_a_malformed_line_is_a_retryable_error(backend: OllamaBackend, ollama_double: OllamaDouble) -> None:
    ollama_double.fault(Fault.malformed_json())
    with pytest.raises(BackendError, match="malformed") as caught:
        await backend.generate(request())
    assert caught.value.retryable


async def test_a_slow_first_byte_is_waited_for_and_can_be_timed_out(
    backend: OllamaBackend, ollama_double: OllamaDouble
) -> None:
    ollama_double.fault(Fault.delay(0.3))
    with anyio.fail_after(5):
        assert (await backend.generate(request())).text == "ok"
    ollama_double.fault(Fault.delay(5))
    with pytest.raises(TimeoutError), anyio.fail_after(0.2):
        await backend.generate(request())


def test_chat_body_carries_every_option_ollama_documents() -> None:
    body = chat_body(request(schema=SCHEMA, num_ctx=4096, max_tokens=99, temperature=0.0, seed=7, keep_alive="5m"))
    assert body["options"] == {"num_ctx": 4096, "num_predict": 99, "temperature": 0.0, "seed": 7}
    assert body["format"] == SCHEMA and body["keep_alive"] == "5m"
    assert body["messages"] == [{"role": "user", "content": "write a function"}]


async def _ignore(done: float, total: float | None, message: str) -> None:
    return None
