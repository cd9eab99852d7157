"""`local-llm capability|enable|disable|status` as real subprocesses against the Ollama double, a fake `ollama`
executable, and the embedded default."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine.executor.backends.embedded import EMBEDDED_MODEL
from engine.session.processes import alive as _alive
from engine.testing.fake_ollama import free_port, write_fake_ollama
from engine.testing.ollama_double import OllamaDouble
from engine.testing.openai_double import OpenAIDouble
from mcp_adapter.cli.exit_codes import REFUSED
from tests.markers import needs_embedded


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """No real ollama on PATH, no backend forced, no NVIDIA library needed."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    cli_env["PATH"] = str(empty)
    for name in ("LOCAL_LLM_BACKEND", "LOCAL_LLM_NUM_CTX", "LOCAL_LLM_GGUF"):
        cli_env.pop(name, None)
    return cli_env


def run(cli_command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_command, *args], env=env, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], check=False)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def test_enable_status_disable_round_trip_across_processes(
    cli_command: list[str], env: dict[str, str], ollama_double: OllamaDouble
) -> None:
    env["OLLAMA_HOST"] = ollama_double.host
    enabled = run(cli_command, env, "enable", "--llm", "deepseek-coder:33b", "--json")
    assert enabled.returncode == 0, enabled.stderr
    status = as_json(enabled)
    assert (status["state"], status["backend"], status["model"]) == ("loaded", "ollama", "deepseek-coder:33b")
    assert ollama_double.bodies("/api/pull") == [{"model": "deepseek-coder:33b", "stream": True}]
    again = as_json(run(cli_command, env, "status", "--json"))
    assert again["state"] == "loaded" and again["num_ctx"] == status["num_ctx"]
    assert [m["name"] for m in again["loaded"]] == ["deepseek-coder:33b"]
    assert set(again) >= {"state", "backend", "model", "persist", "loaded", "runs_active", "num_ctx", "vram",
                          "reason", "capabilities"}
    assert again["capabilities"] == ["completion"]
    assert "capabilities: completion" in run(cli_command, env, "status").stdout
    disabled = run(cli_command, env, "disable", "--json")
    assert disabled.returncode == 0 and as_json(disabled)["state"] == "idle"
    assert ollama_double.loaded == {}
    text = run(cli_command, env, "status")
    assert "session: idle" in text.stdout and "server running: yes; model loaded: no" in text.stdout


def test_capability_json_has_the_documented_shape(
    cli_command: list[str], env: dict[str, str], ollama_double: OllamaDouble
) -> None:
    env["OLLAMA_HOST"] = ollama_double.host
    proc = run(cli_command, env, "capability", "--json")
    assert proc.returncode == 0, proc.stderr
    cap = as_json(proc)
    assert set(cap) >= {"can_enable", "gpus", "backend", "ollama", "models", "recommended_model", "reasons",
                        "candidates", "tiers", "table_checked"}
    assert cap["ollama"]["running"] is True and cap["ollama"]["version"] == ollama_double.version
    assert cap["backend"] == "ollama" and cap["can_enable"] is True
    assert "deepseek-coder:6.7b" in [m["name"] for m in cap["models"]]
    assert {"model", "size_gb", "fits", "pulled", "num_ctx", "thinking"} <= set(cap["candidates"][0])
    text = run(cli_command, env, "capability").stdout
    assert "can enable: yes" in text and "candidates for this VRAM" in text
    assert f"{cap['candidates'][0]['model']}: " in text and "not pulled, num_ctx " in text


def test_a_failed_enable_exits_non_zero_and_prints_the_failed_status(
    cli_command: list[str], env: dict[str, str], ollama_double: OllamaDouble
) -> None:
    env["OLLAMA_HOST"] = ollama_double.host
    proc = run(cli_command, env, "enable", "--llm", "not-in-registry:1b", "--json")
    assert proc.returncode == 1
    status = as_json(proc)
    assert status["state"] == "failed" and "pull failed" in status["error"] and status["reason"] == status["error"]
    assert as_json(run(cli_command, env, "status", "--json"))["state"] == "failed"


def test_a_failed_enable_says_its_reason_once(
    cli_command: list[str], env: dict[str, str], ollama_double: OllamaDouble
) -> None:
    # It said it three times: "enable failed: R", the status's "reason: R", and a warning log line on stderr.
    env["OLLAMA_HOST"] = ollama_double.host
    proc = run(cli_command, env, "enable", "--llm", "not-in-registry:1b")
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert first.startswith("enable failed: ") and "pull failed" in first
    reason = first.removeprefix("enable failed: ")
    assert (proc.stdout + proc.stderr).count(reason) == 1, proc.stdout + proc.stderr
    assert "session: failed" in proc.stdout


def test_a_bad_llm_spec_is_refused_with_the_field_named(
    cli_command: list[str], env: dict[str, str], ollama_double: OllamaDouble
) -> None:
    env["OLLAMA_HOST"] = ollama_double.host
    proc = run(cli_command, env, "enable", "--llm", "two words")
    assert proc.returncode == REFUSED and "llm: expected" in proc.stderr


def test_enable_starts_ollama_detached_and_it_outlives_the_command(
    cli_command: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    write_fake_ollama(bin_dir)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["OLLAMA_HOST"] = f"127.0.0.1:{free_port()}"
    env.update(FAKE_OLLAMA_MODELS="deepseek-coder:6.7b", FAKE_OLLAMA_DELAY="0.3")
    proc = run(cli_command, env, "enable", "--json")
    status = as_json(proc)
    pid = int(status["server_pid"])
    try:
        assert proc.returncode == 0, proc.stderr
        assert status["state"] == "loaded" and status["model"] == "deepseek-coder:6.7b"
        # The command has exited; the server it started still runs, in its own session, and answers.
        assert _alive(pid) and os.getsid(pid) == pid
        assert as_json(run(cli_command, env, "status", "--json"))["loaded"][0]["name"] == "deepseek-coder:6.7b"
        stopped = run(cli_command, env, "disable", "--stop-server", "--json")
        assert stopped.returncode == 0, stopped.stderr
        assert as_json(stopped)["state"] == "idle"
        assert not _alive(pid)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)

            async def gone() -> None:
                with anyio.fail_after(10):
                    while _alive(pid):
                        await anyio.sleep(0.05)

            anyio.run(gone)


@needs_embedded
def test_enable_falls_back_to_the_embedded_default_without_ollama(
    cli_command: list[str], env: dict[str, str]
) -> None:
    env["OLLAMA_HOST"] = f"127.0.0.1:{free_port()}"
    proc = run(cli_command, env, "enable", "--json")
    assert proc.returncode == 0, proc.stderr
    status = as_json(proc)
    assert (status["state"], status["backend"], status["model"]) == ("loaded", "embedded", EMBEDDED_MODEL)
    assert as_json(run(cli_command, env, "disable", "--json"))["state"] == "idle"


def test_enable_slots_on_a_llama_cpp_server_across_processes(cli_command: list[str], env: dict[str, str]) -> None:
    with OpenAIDouble("llama.cpp", n_ctx=8192, total_slots=4) as server:
        env["LOCAL_LLM_OPENAI_URL"] = server.url
        refused = run(cli_command, env, "enable", "--backend", "openai", "--slots", "0")
        assert refused.returncode == REFUSED and refused.stdout == ""
        assert "local-llm enable: slots: expected an integer >= 1" in refused.stderr
        default = as_json(run(cli_command, env, "enable", "--backend", "openai", "--json"))
        text = run(cli_command, env, "status").stdout
        chosen = as_json(run(cli_command, env, "enable", "--backend", "openai", "--slots", "2", "--json"))
    assert (default["slots"], default["slots_from"], default["num_ctx"]) == (4, "server", 2048)
    assert "slots: 4 (the server's /props)" in text
    assert "context: llama.cpp's server divides its context across its 4 slots" in text
    assert (chosen["state"], chosen["slots"], chosen["slots_from"]) == ("loaded", 2, "setting")
