"""The OpenAI-compatible backend against a real server: llama-cpp-python's `python -m llama_cpp.server` running the
embedded GGUF as its own process."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator

import anyio
import httpx
import pytest

from engine import Engine
from engine.executor.backends.base import ChatMessage, GenerateRequest, ModelInfo, ModelMissing
from engine.executor.backends.embedded import embedded_installed, gguf_path
from engine.executor.backends.openai import OpenAIBackend, openai_base_url
from engine.session.lifecycle import EnableFailed
from engine.testing.fake_ollama import free_port
from tests.markers import needs_embedded

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "lines": {"type": "integer"}},
    "required": ["name", "lines"],
}

server_installed = importlib.util.find_spec("fastapi") is not None and \
    importlib.util.find_spec("pydantic_settings") is not None and \
    importlib.util.find_spec("starlette_context") is not None
# The model itself is needs_embedded's business; this is only the server's own dependencies.
needs_server = pytest.mark.skipif(
    not server_installed,
    reason="the extras of the OpenAI-compatible server (fastapi, pydantic-settings, starlette-context, sse-starlette, "
    "uvicorn) are missing",
)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on a free port, started once for this module; yields its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host", "127.0.0.1",
             "--port", str(port), "--n_ctx", "2048", "--verbose", "false"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async def wait() -> None:
            with anyio.fail_after(90):
                async with httpx.AsyncClient() as client:
                    while proc.poll() is None:
                        try:
                            if (await client.get(f"{url}/v1/models")).status_code == 200:
                                return
                        except httpx.TransportError:
                            pass
                        await anyio.sleep(0.1)
            raise RuntimeError(f"llama_cpp.server exited: {log_path.read_text()[-2000:]}")

        anyio.run(wait)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_base_url_drops_a_trailing_v1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("LOCAL_LLM_OPENAI_URL", "http://box:8000/v1/")
    assert openai_base_url() == "http://box:8000"
    monkeypatch.delenv("LOCAL_LLM_OPENAI_URL")
    assert openai_base_url() == "http://127.0.0.1:8080"


@pytest.mark.anyio
async def test_enable_fails_when_no_openai_server_answers(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_LLM_OPENAI_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(EnableFailed, match="no OpenAI-compatible server answers.*llama_cpp.server"):
        await engine.enable(llm=True, backend="openai")
    assert (await engine.status())["state"] == "failed"


@needs_embedded
@needs_server
@pytest.mark.anyio
async def test_a_real_llama_cpp_server_streams_a_schema_answer_with_token_counts(llama_server: str) -> None:
    backend = OpenAIBackend(llama_server)
    try:
        [served] = await backend.models()
        pieces: list[str] = []
        with anyio.fail_after(60):
            result = await backend.generate(
                GenerateRequest(model=served.name, num_ctx=2048, max_tokens=64, seed=1, schema=SCHEMA,
                                messages=[ChatMessage("user", "Name a Python function that adds two numbers.")]),
                on_token=pieces.append,
            )
        answer = json.loads(result.text, strict=False)
        assert set(answer) == {"name", "lines"}
        assert result.completion_tokens == len(pieces) > 0 and "".join(pieces) == result.text
        assert result.prompt_tokens > 5 and result.total_seconds > 0 and result.done_reason == "stop"
        await backend.load("any-name", num_ctx=2048, keep_alive=None)  # one model: llama.cpp ignores the name
    finally:
        await backend.aclose()


@pytest.mark.anyio
async def test_a_server_listing_several_other_models_does_not_serve_the_asked_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = OpenAIBackend("http://127.0.0.1:9")

    async def two() -> list[ModelInfo]:
        return [ModelInfo("a"), ModelInfo("b")]

    monkeypatch.setattr(backend, "models", two)
    try:
        with pytest.raises(ModelMissing, match="does not serve 'c' .*a, b"):
            await backend.load("c", num_ctx=2048, keep_alive=None)
        await backend.load("b", num_ctx=2048, keep_alive=None)
    finally:
        await backend.aclose()


@needs_embedded
@needs_server
@pytest.mark.anyio
async def test_enable_generate_and_disable_through_a_real_openai_compatible_server(
    engine: Engine, llama_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_LLM_OPENAI_URL", f"{llama_server}/v1")
    monkeypatch.delenv("LOCAL_LLM_NUM_CTX", raising=False)
    # llama-cpp-python's server does not say its --n_ctx: enable refuses to guess, and names the setting.
    with pytest.raises(EnableFailed, match="LOCAL_LLM_NUM_CTX"):
        await engine.enable(llm=True, backend="openai")
    monkeypatch.setenv("LOCAL_LLM_NUM_CTX", "2048")
    status = await engine.enable(llm=True, backend="openai")
    assert (status["num_ctx"], status["num_ctx_from"]) == (2048, "LOCAL_LLM_NUM_CTX")
    assert (status["state"], status["backend"], status["base_url"]) == ("loaded", "openai", llama_server)
    assert status["model"] == str(gguf_path())  # llama_cpp.server names its model by the path
    executor = await engine.session.executor()
    with anyio.fail_after(60):
        result = await executor.backend.generate(
            GenerateRequest(model=executor.model, num_ctx=executor.num_ctx, max_tokens=64, seed=2, schema=SCHEMA,
                            messages=[ChatMessage("user", "Name a function that sorts a list.")]))
    assert result.completion_tokens > 0 and result.prompt_tokens > 0
    assert (await engine.disable())["state"] == "idle"


def test_the_server_extras_are_importable_when_the_embedded_default_is() -> None:
    # CI installs them next to llama-cpp-python; without them the real-server tests above would be skipped.
    if embedded_installed():
        assert server_installed, "pip install fastapi pydantic-settings 'starlette-context>=0.3.6,<0.4' PyYAML"

