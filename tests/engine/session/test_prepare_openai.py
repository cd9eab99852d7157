"""Enabling a session on an OpenAI-compatible server (engine/session/prepare.py): num_ctx within what one request
may use there (llama.cpp's per-slot context, vLLM's max_model_len), the server's slots, and the warning on Ollama's
`/v1`. The servers are played by engine/testing/openai_double.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

import engine.session.gpu as gpu_module
from engine import Engine
from engine.session.gpu import GpuReport
from engine.testing.openai_double import OpenAIDouble


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Nothing from the environment chooses for the test; CPU only; no real server reachable by accident."""
    for name in ("LOCAL_LLM_BACKEND", "LOCAL_LLM_NUM_CTX", "OPENAI_BASE_URL", "LOCAL_LLM_OPENAI_API_KEY",
                 "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: GpuReport(reason="CPU only (test)"))
    yield


@contextmanager
def serving(monkeypatch: pytest.MonkeyPatch, kind: str, **options: Any) -> Iterator[OpenAIDouble]:
    """A started double of `kind`, where $LOCAL_LLM_OPENAI_URL points (with the `/v1` users write)."""
    with OpenAIDouble(kind, **options) as double:
        monkeypatch.setenv("LOCAL_LLM_OPENAI_URL", f"{double.url}/v1")
        yield double


@pytest.mark.anyio
async def test_num_ctx_on_llama_cpp_stays_within_one_slot_and_its_slots_are_the_servers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(monkeypatch, "llama.cpp", n_ctx=8192, total_slots=4, n_ctx_train=32768):
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai")
    assert (status["state"], status["server_kind"], status["context_length"]) == ("loaded", "llama.cpp", 32768)
    # -c 8192 across 4 slots: one request holds 2048, whatever the model was trained for.
    assert (status["num_ctx"], status["slot_context"], status["slots"], status["slots_from"]) == (
        2048, 2048, 4, "server")
    assert "divides its context across its 4 slots" in status["context_note"]
    assert "warnings" not in status


@pytest.mark.anyio
async def test_a_forced_num_ctx_still_never_exceeds_one_slot(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_LLM_NUM_CTX", "16384")
    with serving(monkeypatch, "llama.cpp", n_ctx=8192, total_slots=2):
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai")
    assert status["num_ctx"] == status["slot_context"] == 4096


@pytest.mark.anyio
async def test_num_ctx_on_vllm_stays_within_max_model_len_with_one_slot(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(monkeypatch, "vllm", max_model_len=3072):
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai")
    assert (status["server_kind"], status["context_length"], status["num_ctx"]) == ("vllm", 3072, 2048)
    assert (status["slots"], status["slots_from"]) == (1, "default")  # vLLM does not say; the engine runs one


@pytest.mark.anyio
async def test_ollamas_v1_enables_with_a_warning_that_names_the_native_backend(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(monkeypatch, "ollama", version="0.13.1") as double, structlog.testing.capture_logs() as logs:
        url = double.url
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai")
    assert (status["state"], status["server_kind"], status["num_ctx"]) == ("loaded", "ollama", 4096)
    [warning] = status["warnings"]
    assert warning["code"] == "ollama_openai_endpoint"
    assert "num_ctx and keep_alive cannot be set" in warning["message"]
    assert f"--backend ollama` with OLLAMA_HOST={url}" in warning["message"]
    assert [e["message"] for e in logs if e["event"] == "ollama_openai_endpoint"] == [warning["message"]]
    assert (await engine.status())["warnings"] == [warning]  # kept with the session


@pytest.mark.anyio
async def test_more_slots_than_the_server_has_enables_with_a_warning(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(monkeypatch, "llama.cpp", total_slots=2):
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai", slots=3)
    assert (status["slots"], status["slots_from"]) == (3, "setting")
    assert [w["code"] for w in status["warnings"]] == ["slots_above_server"]
    assert "--slots 2 or start the server with -np 3" in status["warnings"][0]["message"]


@pytest.mark.anyio
async def test_disable_forgets_what_the_server_said(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(monkeypatch, "ollama"):
        with anyio.fail_after(20):
            await engine.enable(backend="openai")
            status = await engine.disable()
    assert status["state"] == "idle" and "warnings" not in status and "server_kind" not in status
    assert (status["slots"], status["num_ctx"]) == (None, None)


@pytest.mark.anyio
async def test_behind_litellm_num_ctx_is_the_smallest_deployments_and_the_slots_add_up(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(monkeypatch, "litellm", deployments=[(8192, 2), (4096, 1)]):
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai")
    assert (status["server_kind"], status["num_ctx"], status["slot_context"]) == ("litellm", 4096, 4096)
    assert status["num_ctx_from"] == "LiteLLM's /v1/model/info (the smallest of 2 deployments)"
    assert (status["slots"], status["slots_from"]) == (3, "gateway")
    assert "smallest deployment holds 4096 tokens" in status["context_note"]


@pytest.mark.anyio
async def test_behind_litellm_slots_are_the_default_when_one_deployment_does_not_say(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(monkeypatch, "litellm", deployments=[(4096, 2), (4096, None)]):
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai")
    assert (status["slots"], status["slots_from"], status["num_ctx"]) == (1, "default", 4096)


@pytest.mark.anyio
async def test_a_gateway_that_says_no_context_fails_enable_naming_the_setting(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(monkeypatch, "litellm", deployments=[(None, 2), (None, 2)]):
        with anyio.fail_after(20), pytest.raises(Exception, match="LOCAL_LLM_NUM_CTX=<tokens>") as refused:
            await engine.enable(backend="openai")
        assert "does not say how much context coder holds" in str(refused.value)
        monkeypatch.setenv("LOCAL_LLM_NUM_CTX", "3072")
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai")
    assert (status["num_ctx"], status["num_ctx_from"], status["slots"]) == (3072, "LOCAL_LLM_NUM_CTX", 4)


@pytest.mark.anyio
async def test_num_ctx_from_names_the_servers_figure(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(monkeypatch, "llama.cpp", n_ctx=4096, total_slots=1):
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai")
    assert (status["num_ctx"], status["num_ctx_from"]) == (4096, "llama.cpp's /props (one slot's context)")
