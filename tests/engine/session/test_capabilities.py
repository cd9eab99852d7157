"""What a model can do, from Ollama's `/api/show` `capabilities`: `enable` refuses a model that cannot generate text
(engine/session/prepare.py), `status` shows the loaded model's capabilities, and `capability` lists this GPU's
candidates, pulled or not, with the num_ctx each would get (engine/session/views.py).

Ollama cannot be installed where the tests run, so the Ollama double (engine/testing/ollama_double) imitates it; like
Ollama, it leaves `capabilities` out of `/api/show` below v0.6.4 (ollama commit e172f095b).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import engine.session.gpu as gpu_module
from engine import Engine
from engine.executor.backends.ollama import OllamaBackend
from engine.session.gpu import GIB, GpuInfo, GpuReport, choose_num_ctx
from engine.session.lifecycle import EnableFailed
from engine.testing.fake_ollama import free_port
from engine.testing.ollama_double import FakeModel, OllamaDouble

DEADLINE_S = 20.0
EMBEDDER = FakeModel("nomic-embed-text", context_length=2048, size=274_000_000, family="nomic-bert",
                     capabilities=("embedding",))
CODER_14B = FakeModel("qwen2.5-coder:14b", context_length=32768, size=9_000_000_000, family="qwen2",
                      capabilities=("completion", "tools", "insert"))


def gpu(total_gib: float, free_gib: float) -> GpuReport:
    total, free = int(total_gib * GIB), int(free_gib * GIB)
    return GpuReport(gpus=(GpuInfo(0, "Test GPU", total, free, total - free),), driver="550.00")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No backend forced, no real ollama on PATH, a 12 GB GPU with 11 GB free unless a test says otherwise."""
    monkeypatch.delenv("LOCAL_LLM_BACKEND", raising=False)
    monkeypatch.delenv("LOCAL_LLM_NUM_CTX", raising=False)
    (tmp_path / "empty-bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: gpu(12, 11))


# -- enable ------------------------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_enable_refuses_an_embedding_only_model_before_loading_anything(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    ollama_double.add_model(EMBEDDER)
    with anyio.fail_after(DEADLINE_S), pytest.raises(EnableFailed) as caught:
        await engine.enable(llm="nomic-embed-text")
    reason = caught.value.reason
    assert "nomic-embed-text cannot generate text" in reason and "embedding" in reason
    assert "--llm qwen2.5-coder:14b" in reason  # the fix names the table's model for this GPU
    assert (await engine.status())["state"] == "failed"
    assert ollama_double.loads == [] and ollama_double.bodies("/api/generate") == []


@pytest.mark.anyio
async def test_a_server_too_old_to_report_capabilities_is_not_refused_for_that(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    ollama_double.version = "0.6.3"
    with anyio.fail_after(DEADLINE_S):
        backend = OllamaBackend(ollama_double.url)
        try:
            assert "capabilities" not in await backend.show("deepseek-coder:6.7b")
        finally:
            await backend.aclose()
        status = await engine.enable(llm="deepseek-coder:6.7b")
    assert (status["state"], status["capabilities"]) == ("loaded", None)
    assert ollama_double.loads == [("deepseek-coder:6.7b", status["num_ctx"])]


@pytest.mark.anyio
async def test_status_shows_the_loaded_models_capabilities_until_disable(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    ollama_double.add_model(CODER_14B)
    with anyio.fail_after(DEADLINE_S):
        enabled = await engine.enable(llm="qwen2.5-coder:14b")
        status = await engine.status()
        disabled = await engine.disable()
    assert enabled["capabilities"] == status["capabilities"] == ["completion", "tools", "insert"]
    assert disabled["capabilities"] is None


@pytest.mark.anyio
async def test_enable_with_defaults_on_cpu_skips_a_pulled_embedding_model(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: GpuReport(reason="NVML unavailable (test); CPU only"))
    coder = ollama_double.remove_model("deepseek-coder:6.7b")
    assert coder is not None
    ollama_double.add_model(EMBEDDER)  # listed first by /api/tags
    ollama_double.add_model(coder)
    with anyio.fail_after(DEADLINE_S):
        status = await engine.enable(llm=True)
    assert (status["model"], status["capabilities"]) == ("deepseek-coder:6.7b", ["completion"])


# -- capability --------------------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_capability_lists_this_gpus_candidates_pulled_or_not_with_a_num_ctx_each(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    ollama_double.add_model(CODER_14B)
    with anyio.fail_after(DEADLINE_S):
        cap = await engine.capability()
    assert (cap["recommended_model"], cap["recommended_pulled"]) == ("qwen2.5-coder:14b", True)
    rows = {row["model"]: row for row in cap["candidates"]}
    assert next(iter(rows)) == "qwen2.5-coder:14b"
    first = rows["qwen2.5-coder:14b"]
    assert (first["pulled"], first["fits"], first["capabilities"]) == (True, True, ["completion", "tools", "insert"])
    assert first["num_ctx"] == choose_num_ctx(model_context=32768, free_vram_bytes=11 * GIB,
                                              model_size_bytes=9_000_000_000)
    assert rows["deepseek-coder-v2:16b"]["pulled"] is False and "capabilities" not in rows["deepseek-coder-v2:16b"]
    assert all(isinstance(row["num_ctx"], int) for row in rows.values())
    assert rows["qwen3:14b"]["thinking"] is True
    by_name = {m["name"]: m for m in cap["models"]}
    assert by_name["deepseek-coder:6.7b"]["capabilities"] == ["completion"]
    assert cap["table_checked"] == "2026-11-25" and cap["tiers"][0]["models"][0] == "qwen2.5-coder:1.5b"


@pytest.mark.anyio
async def test_capability_on_a_server_too_old_to_report_capabilities_says_they_are_unknown(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    ollama_double.version = "0.6.3"
    with anyio.fail_after(DEADLINE_S):
        cap = await engine.capability()
    assert [(m["name"], m["capabilities"]) for m in cap["models"] if m["name"] == "deepseek-coder:6.7b"] == [
        ("deepseek-coder:6.7b", None)]


@pytest.mark.anyio
async def test_capability_without_ollama_still_lists_the_candidates_and_says_pulled_is_unknown(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    with anyio.fail_after(DEADLINE_S):
        cap = await engine.capability()
    assert cap["ollama"]["running"] is False
    assert cap["candidates"] and all(row["pulled"] is None for row in cap["candidates"])
    assert all(row["num_ctx"] >= 2048 for row in cap["candidates"])
    assert any("which candidates are pulled is unknown" in r for r in cap["reasons"])


@pytest.mark.anyio
@pytest.mark.parametrize(("version", "refuses"), [("0.33.0", True), ("0.12.5", False)])
async def test_status_says_whether_the_server_refuses_overlong_prompts_or_the_engine_must(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, version: str, refuses: bool,
) -> None:
    thinker = FakeModel("qwen3:8b", context_length=40960, family="qwen3", capabilities=("completion", "thinking"))
    with OllamaDouble(models=[thinker], version=version) as double:
        monkeypatch.setenv("OLLAMA_HOST", double.host)
        with anyio.fail_after(DEADLINE_S):
            await engine.enable(llm="qwen3:8b")
            status = await engine.status()
            await engine.disable()
    guard = status["prompt_guard"]
    assert ("refuses an overlong prompt" in guard) is refuses
    assert ("ignores `truncate: false`" in guard and "0.12.6" in guard) is not refuses
    assert "think: false" in status["thinking"]
