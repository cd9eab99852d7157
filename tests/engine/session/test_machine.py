"""Whose memory the advice follows (engine/session/machine.py): this machine's probes, or a remote Ollama's own
figures from `/api/ps`. Ollama cannot be installed where the tests run: the Ollama double
(engine/testing/ollama_double) stands in for the server; a remote one is the double behind `is_remote` saying so."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import engine.session.machine as machine_module
from engine import Engine
from engine.executor.backends.ollama import OllamaBackend
from engine.session.gpu import probe_gpus
from engine.session.machine import is_remote, server_report
from engine.session.recommendations import recommend_for
from engine.testing.ollama_double import FakeModel, OllamaDouble

DEADLINE_S = 20.0
CODER = FakeModel("qwen2.5-coder:14b", context_length=32768, size=9_000_000_000, family="qwen2")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("LOCAL_LLM_BACKEND", raising=False)
    monkeypatch.delenv("LOCAL_LLM_NUM_CTX", raising=False)
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))


def remote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_module, "is_remote", lambda url: (True, "gpu-box resolves to 192.0.2.10"))


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
