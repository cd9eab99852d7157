"""Real processes for the gateway scenarios (R9, B12, tests/bench/test_reliability_short.py): `python -m
llama_cpp.server` with the embedded GGUF (one or two of them) behind a real LiteLLM proxy, all on 127.0.0.1, started
and stopped here.

LiteLLM's config (docs/gateways.md explains each line): one model group `smol` with a deployment per server, each
stating its context (`model_info.max_input_tokens`, since llama-cpp-python's server does not say it) and its
concurrency (`litellm_params.max_parallel_requests`); `least-busy` routing; `allowed_fails: 3` and a 10 s cooldown
(with 0, the first refused request, such as llama-cpp-python's 422 to a `json_schema` the engine sends before it
learns the server's form, cooled a lone deployment down for 60 s); `session_affinity` (optional) pins the
requests that carry one session id (the engine sends the run's) to one deployment; `num_retries` lets the router
send a request whose server died to the other one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.b3_delegation import gguf
from bench.common import PYTHON, free_port, wait_http

__all__ = ["MASTER_KEY", "MODEL_GROUP", "Gateway", "gateway", "litellm_installed", "llama_servers"]

MODEL_GROUP = "smol"
MASTER_KEY = "sk-local-llm-bench"
N_CTX = 4096
START_TIMEOUT_S = 180.0


def litellm_installed() -> bool:
    """The proxy's command and its server dependencies (the `test` extra installs them)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("litellm", "uvicorn", "fastapi", "backoff"))


@dataclass
class Gateway:
    url: str
    """The proxy's root (the engine's LOCAL_LLM_OPENAI_URL)."""
    servers: list[str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """One per server, in the order of `servers`."""

    def kill(self, index: int) -> None:
        """SIGKILL one server: its requests in flight break mid-stream, new ones find nothing at its port."""
        proc = self.processes[index]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def _process(args: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None) -> Iterator[
        subprocess.Popen[bytes]]:
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    try:
        yield proc
    finally:
        _stop(proc)


@contextmanager
def llama_servers(count: int, logs: Path, *, n_ctx: int = N_CTX) -> Iterator[tuple[list[str], list[
        subprocess.Popen[bytes]]]]:
    """`count` llama-cpp-python servers with the embedded GGUF, named `MODEL_GROUP`; yields (urls, processes)."""
    with ExitStack() as stack:
        urls, procs = [], []
        for n in range(count):
            port = free_port()
            proc = stack.enter_context(_process(
                [PYTHON, "-m", "llama_cpp.server", "--model", str(gguf()), "--model_alias", MODEL_GROUP,
                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "1",
                 "--verbose", "False"], logs / f"llama-{n}.log"))
            urls.append(f"http://127.0.0.1:{port}")
            procs.append(proc)
        for url, proc in zip(urls, procs, strict=True):
            wait_http(f"{url}/v1/models", timeout_s=START_TIMEOUT_S, proc=proc)
        yield urls, procs


def litellm_config(servers: Sequence[str], *, affinity: bool, n_ctx: int = N_CTX, parallel: int = 1) -> str:
    deployments = "".join(
        f"  - model_name: {MODEL_GROUP}\n"
        f"    litellm_params:\n"
        f"      model: openai/{MODEL_GROUP}\n"
        f"      api_base: {url}/v1\n"
        f"      api_key: none\n"
        f"      max_parallel_requests: {parallel}\n"
        f"      stream_timeout: 120\n"
        f"    model_info:\n"
        f"      max_input_tokens: {n_ctx}\n"
        for url in servers)
    checks = "  optional_pre_call_checks: [session_affinity]\n" if affinity else ""
    return (f"model_list:\n{deployments}"
            f"router_settings:\n  routing_strategy: least-busy\n  num_retries: 2\n  retry_after: 0\n"
            f"  allowed_fails: 3\n  cooldown_time: 10\n{checks}"
            f"litellm_settings:\n  drop_params: true\n  telemetry: false\n"
            f"general_settings:\n  master_key: {MASTER_KEY}\n")


def _litellm_command() -> list[str]:
    exe = Path(sys.executable).with_name("litellm")
    return [str(exe)] if exe.exists() else [shutil.which("litellm") or "litellm"]


@contextmanager
def gateway(count: int, workdir: Path, *, affinity: bool = True, n_ctx: int = N_CTX) -> Iterator[Gateway]:
    """`count` llama.cpp servers behind a LiteLLM proxy; everything stopped on the way out."""
    workdir.mkdir(parents=True, exist_ok=True)
    with llama_servers(count, workdir, n_ctx=n_ctx) as (urls, procs):
        config = workdir / "litellm.yaml"
        config.write_text(litellm_config(urls, affinity=affinity, n_ctx=n_ctx))
        port = free_port()
        env = {**os.environ, "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOG": "ERROR",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True", "DISABLE_SCHEMA_UPDATE": "True", "NO_DOCS": "True"}
        with _process([*_litellm_command(), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                       "--num_workers", "1"], workdir / "litellm.log", env=env) as proxy:
            url = f"http://127.0.0.1:{port}"
            wait_http(f"{url}/health/liveliness", timeout_s=START_TIMEOUT_S, proc=proxy)
            yield Gateway(url, urls, procs)
