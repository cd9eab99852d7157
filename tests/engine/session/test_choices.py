"""The `slots` setting (engine/session/choices.py and its path through enable): checked with a clear error, recorded
in the session, used for the backend's parallelism in every process that rebuilds the executor, read from the server
where it says (llama.cpp's /props), else 1, and never from this process's environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import engine.session.gpu as gpu_module
from engine import Engine, Project
from engine.delegation.generation import Slots, generate
from engine.errors import InvalidArgument
from engine.executor.backends.base import ChatMessage, GenerateRequest
from engine.executor.backends.ollama import OllamaBackend
from engine.executor.backends.openai import OpenAIBackend
from engine.session.choices import check_slots
from engine.session.gpu import GpuReport
from engine.testing.ollama_double import OllamaDouble
from engine.testing.openai_double import OpenAIDouble


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("LOCAL_LLM_BACKEND", "LOCAL_LLM_NUM_CTX", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    # What the engine used to read from its own environment: set here to show it no longer counts.
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "6")
    monkeypatch.setenv("LOCAL_LLM_OPENAI_PARALLEL", "6")
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: GpuReport(reason="CPU only (test)"))
    yield


@pytest.fixture
def other(project_dir: Path) -> Iterator[Engine]:
    """The engine of another process on the same project (what `local-llm delegate` opens after `enable`)."""
    eng = Engine(Project.resolve(project_dir))
    try:
        yield eng
    finally:
        eng.close()


@pytest.mark.parametrize("bad", [0, -1, True, "2", 1.5])
def test_a_slots_value_that_is_not_a_positive_integer_is_refused_with_the_fix(bad: object) -> None:
    with pytest.raises(InvalidArgument, match=r"slots: expected an integer >= 1: how many generations .*leave it out"):
        check_slots(bad)


@pytest.mark.anyio
async def test_a_bad_slots_value_changes_nothing(engine: Engine, ollama_double: OllamaDouble) -> None:
    with pytest.raises(InvalidArgument, match="slots"):
        await engine.enable(llm="deepseek-coder:6.7b", slots=0)
    assert (await engine.status())["state"] == "idle" and ollama_double.bodies("/api/generate") == []


@pytest.mark.anyio
async def test_slots_above_one_on_the_embedded_backend_are_refused(engine: Engine) -> None:
    with pytest.raises(InvalidArgument, match="slots: expected 1 for the embedded backend"):
        await engine.enable(llm="embedded", slots=2)
    assert (await engine.status())["state"] == "idle"


@pytest.mark.anyio
async def test_the_slots_setting_flows_to_the_backend_a_later_process_rebuilds(
    engine: Engine, other: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenAIDouble("llama.cpp", n_ctx=8192, total_slots=4, latency_s=0.3) as double:
        monkeypatch.setenv("LOCAL_LLM_OPENAI_URL", double.url)
        with anyio.fail_after(20):
            status = await engine.enable(backend="openai", slots=2)
            executor = await other.session.executor()
            assert isinstance(executor.backend, OpenAIBackend) and executor.backend.parallelism == 2
            # Five generations at once through the run's slots: the server sees two at a time.
            slots = Slots()
            request = GenerateRequest(model=executor.model, messages=[ChatMessage("user", "hi")])
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(lambda: generate(executor.backend, request, slots=slots, progress=_quiet,
                                                   attempt=1, total=1))
    assert (status["slots"], status["slots_from"]) == (2, "setting")
    assert double.max_in_flight == 2 and len(double.bodies("/v1/chat/completions")) == 5


async def _quiet(done: float, total: float | None, message: str) -> None:
    return None


@pytest.mark.anyio
async def test_slots_default_to_the_servers_total_slots(
    engine: Engine, other: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OpenAIDouble("llama.cpp", total_slots=3) as double:
        monkeypatch.setenv("LOCAL_LLM_OPENAI_URL", double.url)
        with anyio.fail_after(20):
            await engine.enable(backend="openai")
            executor = await other.session.executor()
    assert executor.backend.parallelism == 3


@pytest.mark.anyio
async def test_slots_default_to_one_where_the_server_does_not_say_whatever_the_environment(
    engine: Engine, other: Engine, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(20):
        status = await engine.enable(llm="deepseek-coder:6.7b")
        executor = await other.session.executor()
    assert (status["slots"], status["slots_from"]) == (1, "default")
    assert isinstance(executor.backend, OllamaBackend) and executor.backend.parallelism == 1


@pytest.mark.anyio
async def test_ollama_gets_the_slots_setting_in_a_later_process(
    engine: Engine, other: Engine, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(20):
        await engine.enable(llm="deepseek-coder:6.7b", slots=3)
        executor = await other.session.executor()
    assert executor.backend.parallelism == 3


@pytest.mark.anyio
async def test_enable_again_with_other_slots_changes_them_without_a_reload(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(20):
        await engine.enable(llm="deepseek-coder:6.7b")
        status = await engine.enable(llm="deepseek-coder:6.7b", slots=4)
        executor = await engine.session.executor()
    assert (status["state"], status["slots"], status["slots_from"]) == ("loaded", 4, "setting")
    assert executor.backend.parallelism == 4 and ollama_double.load_count == 1


@pytest.mark.anyio
async def test_runs_that_enable_an_idle_session_again_keep_its_slots_setting(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    with anyio.fail_after(20):
        await engine.enable(llm="deepseek-coder:6.7b", slots=2)
        await engine.disable()
        executor = await engine.session.executor()
    assert executor.backend.parallelism == 2
    assert (await engine.status())["slots_from"] == "setting"
