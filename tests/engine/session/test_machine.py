"""Whose memory the advice follows (engine/session/machine.py): this machine's probes, or a remote Ollama's own
figures from `/api/ps`. Ollama cannot be installed where the tests run: the Ollama double
(engine/testing/ollama_double) stands in for the server; a remote one is the double behind `is_remote` saying so.
An OpenAI-compatible server is engine/testing/openai_double.py."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import anyio
import pytest

import engine.session.gpu as gpu_module
import engine.session.machine as machine_module
from engine import Engine
from engine.executor.backends.ollama import OllamaBackend
from engine.session.gpu import GB, GpuInfo, GpuReport, Probe, probe_gpus
from engine.session.machine import is_remote, server_report, session_report
from engine.session.recommendations import recommend_for
from engine.testing.ollama_double import FakeModel, OllamaDouble
from engine.testing.openai_double import OpenAIDouble

DEADLINE_S = 20.0
CODER = FakeModel("qwen2.5-coder:14b", context_length=32768, size=9_000_000_000, family="qwen2")
LOCAL_CARD = GpuReport(gpus=(GpuInfo(0, "a 24 GB card (test)", 24 * GB, 20 * GB, 4 * GB),), driver="test",
                       probes=(Probe("nvml", "1 card (test)"),))
"""What this machine's probes find in the tests that tell it from the remote Ollama's figures."""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOCAL_LLM_BACKEND", raising=False)
    monkeypatch.delenv("LOCAL_LLM_NUM_CTX", raising=False)
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    for name in ("OPENAI_BASE_URL", "LOCAL_LLM_OPENAI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def remote(monkeypatch: pytest.MonkeyPatch, *, only: str | None = None) -> None:
    """Every server is another machine, or only the one at `only` (its port: the doubles all listen on 127.0.0.1)."""
    def is_remote_double(url: str) -> tuple[bool, str]:
        far = only is None or urlsplit(url).port == urlsplit(only).port
        return (True, "gpu-box resolves to 192.0.2.10") if far else (False, "127.0.0.1 is this machine")
    monkeypatch.setattr(machine_module, "is_remote", is_remote_double)


async def load_coder(url: str, num_ctx: int) -> None:
    backend = OllamaBackend(url)
    try:
        await backend.load("qwen2.5-coder:14b", num_ctx=num_ctx, keep_alive="5m")
    finally:
        await backend.aclose()


def test_loopback_and_this_machine_are_local_and_another_address_is_remote() -> None:
    assert is_remote("http://127.0.0.1:11434")[0] is False
    assert is_remote("http://localhost:11434")[0] is False
    far, why = is_remote("http://192.0.2.10:11434")  # TEST-NET-1: never an address of this machine
    assert far and "not an address of this machine" in why


@pytest.mark.anyio
async def test_a_remote_server_with_no_model_loaded_has_unknown_memory_and_no_tier(
    ollama_double: OllamaDouble,
) -> None:
    with anyio.fail_after(DEADLINE_S):
        report = await server_report(ollama_double.url, "test")
    assert (report.source, report.largest_total, report.gpus) == ("server", None, ())
    assert (report.basis or "").startswith("unknown: no model loaded")
    assert "not used" in report.memory_view()["probes"]["local"]
    recommendation = recommend_for(report)
    assert recommendation.model is None and "memory is unknown" in recommendation.reason


@pytest.mark.anyio
async def test_a_remote_server_with_a_model_loaded_reports_its_size_vram_and_context(
    ollama_double: OllamaDouble,
) -> None:
    ollama_double.add_model(CODER)
    with anyio.fail_after(DEADLINE_S):
        backend = OllamaBackend(ollama_double.url)
        try:
            await backend.load("qwen2.5-coder:14b", num_ctx=16384, keep_alive="5m")
        finally:
            await backend.aclose()
        report = await server_report(ollama_double.url, "test")
    assert (report.server_bytes, report.server_context) == (9_000_000_000, 16384)
    assert "at least 9.0 GB" in (report.basis or "") and "qwen2.5-coder:14b" in (report.basis or "")
    recommendation = recommend_for(report)
    assert recommendation.model == "qwen2.5-coder:7b" and "the server's VRAM (at least)" in recommendation.reason


@pytest.mark.anyio
async def test_capability_for_a_remote_server_says_local_probes_are_not_used(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote(monkeypatch)
    with anyio.fail_after(DEADLINE_S):
        cap = await engine.capability()
        status = await engine.status()
    assert cap["memory"]["source"] == "server" and cap["memory"]["total_bytes"] is None
    assert "gpu-box resolves to 192.0.2.10" in cap["memory"]["probes"]["local"]
    assert cap["recommended_model"] is None and cap["gpus"] == []
    assert any("memory from server: unknown" in r for r in cap["reasons"])
    assert status["vram"]["source"] == "server"


@pytest.mark.anyio
async def test_enable_against_a_remote_server_keeps_num_ctx_to_the_context_it_already_runs(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote(monkeypatch)
    ollama_double.add_model(CODER)
    with anyio.fail_after(DEADLINE_S):
        backend = OllamaBackend(ollama_double.url)
        try:
            await backend.load("qwen2.5-coder:14b", num_ctx=4096, keep_alive="5m")
        finally:
            await backend.aclose()
        status = await engine.enable(llm="qwen2.5-coder:14b")
        await engine.disable()
    assert status["num_ctx"] == 4096


@pytest.mark.anyio
async def test_capability_on_this_cpu_only_machine_gives_every_probes_reason(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    if probe_gpus().gpus:
        pytest.skip("this machine has a GPU: the CPU-only answer is CI's")
    with anyio.fail_after(DEADLINE_S):
        cap = await engine.capability()
        status = await engine.status()
    probes = cap["memory"]["probes"]
    assert set(probes) == {"nvml", "metal", "amdgpu"} and probes["metal"].startswith("not macOS")
    cpu_only = next(r for r in cap["reasons"] if r.endswith("CPU only"))
    assert "nvml: " in cpu_only and "metal: not macOS" in cpu_only and "amdgpu: " in cpu_only
    assert (cap["memory"]["source"], cap["recommended_model"], status["vram"]["source"]) == ("none", None, "none")


@pytest.mark.anyio
async def test_capabilitys_candidates_get_the_num_ctx_enable_would_choose_on_a_remote_server(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote(monkeypatch)
    ollama_double.add_model(CODER)
    with anyio.fail_after(DEADLINE_S):
        await load_coder(ollama_double.url, 4096)
        cap = await engine.capability()
    assert cap["memory"]["source"] == "server" and cap["candidates"]
    # The server runs a model at 4096 tokens: enable keeps to it (the test above), and so does what capability shows.
    assert {row["model"]: row["num_ctx"] for row in cap["candidates"]} == {
        row["model"]: 4096 for row in cap["candidates"]}


@pytest.mark.anyio
async def test_status_on_an_openai_server_here_reports_this_machines_memory_not_ollama_hosts(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote(monkeypatch, only=ollama_double.url)  # OLLAMA_HOST is a GPU box; the OpenAI-compatible server runs here
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: LOCAL_CARD)
    ollama_double.add_model(CODER)
    with OpenAIDouble("llama.cpp", n_ctx=8192, total_slots=1) as server, anyio.fail_after(DEADLINE_S):
        monkeypatch.setenv("LOCAL_LLM_OPENAI_URL", f"{server.url}/v1")
        await load_coder(ollama_double.url, 4096)
        status = await engine.enable(backend="openai")
        await engine.disable()
    assert status["backend"] == "openai"
    assert (status["vram"]["source"], status["vram"]["total_bytes"]) == ("nvml", 24 * GB)


@pytest.mark.anyio
async def test_status_on_a_remote_openai_server_says_its_memory_is_unknown(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote(monkeypatch)
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: LOCAL_CARD)
    ollama_double.add_model(CODER)
    with OpenAIDouble("vllm") as server, anyio.fail_after(DEADLINE_S):
        monkeypatch.setenv("LOCAL_LLM_OPENAI_URL", f"{server.url}/v1")
        await load_coder(ollama_double.url, 4096)  # what OLLAMA_HOST's server holds says nothing of this one
        status = await engine.enable(backend="openai")
        await engine.disable()
    vram = status["vram"]
    assert (vram["source"], vram["total_bytes"], vram["gpus"]) == ("server", None, [])
    assert (vram["basis"] or "").startswith("unknown: an OpenAI-compatible server does not report its memory")


@pytest.mark.anyio
async def test_the_embedded_models_memory_is_this_machines_whatever_ollama_host_says(
    ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote(monkeypatch)
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: LOCAL_CARD)
    ollama_double.add_model(CODER)
    with anyio.fail_after(DEADLINE_S):
        await load_coder(ollama_double.url, 4096)
        embedded = await session_report("embedded", None)
        before_enable = await session_report(None, None)  # no session yet: the default backend's, OLLAMA_HOST
    assert (embedded.source, embedded.largest_total) == ("nvml", 24 * GB)
    assert (before_enable.source, before_enable.largest_total) == ("server", 9_000_000_000)
