"""`status` says whether the server runs (`running`) and whether the session's model is loaded (`model_loaded`), the
two things the specification says it checks. Ollama here is the double in engine/testing/ollama_double."""

from __future__ import annotations

import anyio
import pytest

from engine import Engine
from engine.testing.fake_ollama import free_port
from engine.testing.ollama_double import Fault, OllamaDouble
from tests.markers import needs_embedded

DEADLINE_S = 20


@pytest.mark.anyio
async def test_status_says_running_and_model_loaded_through_a_sessions_life(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(DEADLINE_S):
        before = await engine.status()
        await engine.enable(llm="deepseek-coder:6.7b")
        loaded = await engine.status()
        ollama_double.loaded.clear()  # unloaded behind the session's back (Ollama's keep_alive ran out)
        expired = await engine.status()
        ollama_double.fault(Fault.http(500, "server error", paths=["/api/ps"]))
        broken = await engine.status()
    assert (before["state"], before["running"], before["model_loaded"]) == ("idle", True, False)
    assert (loaded["state"], loaded["running"], loaded["model_loaded"]) == ("loaded", True, True)
    assert (expired["running"], expired["model_loaded"]) == (True, False)
    assert (broken["running"], broken["model_loaded"]) == (False, False)


@pytest.mark.anyio
async def test_status_of_a_session_never_enabled_says_no_server_runs_when_none_answers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    with anyio.fail_after(DEADLINE_S):
        status = await engine.status()
    assert (status["state"], status["running"], status["model_loaded"]) == ("idle", False, False)


@pytest.mark.anyio
async def test_status_after_disable_probes_the_server_it_used(engine: Engine, ollama_double: OllamaDouble) -> None:
    with anyio.fail_after(DEADLINE_S):
        await engine.enable(llm="deepseek-coder:6.7b")
        await engine.disable()
        idle = await engine.status()
    assert (idle["state"], idle["running"], idle["model_loaded"]) == ("idle", True, False)


@needs_embedded
@pytest.mark.anyio
async def test_status_of_an_embedded_session_runs_in_process_and_says_when_the_model_is_in_memory(
    engine: Engine,
) -> None:
    with anyio.fail_after(120):
        enabled = await engine.enable(llm=True, backend="embedded")
        status = await engine.status()
    assert enabled["state"] == "loaded" and status["running"] is True
    loaded_in_process = [m for m in status["loaded"] if "where" not in m]
    assert status["model_loaded"] is bool(loaded_in_process)
