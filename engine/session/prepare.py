"""Preparing each backend for a session: start the server if needed, get the model, choose num_ctx, load it.

Each `prepare_*` returns the session data the `ready` transition records (everything a later process needs to rebuild
the executor, the `slots` included), or raises a UserError that says what to do.

Slots: the `slots` setting when enable got one; else what the server says (llama.cpp's `total_slots` in `/props`);
else what a gateway says (LiteLLM: its deployments' `max_parallel_requests` added up); else 1. Never this process's
OLLAMA_NUM_PARALLEL: the engine's environment need not be the server's.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import structlog

from engine.errors import UserError
from engine.executor.backends import make_backend, ollama_installed
from engine.executor.backends.base import ModelMissing
from engine.executor.backends.embedded import EMBEDDED_MODEL
from engine.executor.backends.ollama import OllamaBackend, canonical_model, context_length_from_show, ollama_base_url
from engine.executor.backends.openai import OpenAIBackend
from engine.executor.backends.openai_server import GroupFacts, ServerFacts
from engine.executor.forms import parameter_count
from engine.progress import Progress
from engine.session.gpu import GB, NUM_CTX_ENV, GpuReport, choose_num_ctx
from engine.session.llm_spec import LlmSpec
from engine.session.machine import machine_report
from engine.session.processes import alive, spawn_detached
from engine.session.recommendations import capabilities_from_show, generates_text, recommend_for, suggested_model

__all__ = ["SERVER_TIMEOUT_ENV", "SESSION_KEEP_ALIVE", "Timeouts", "keep_alive_for", "prepare"]

log = structlog.get_logger(__name__)

SERVER_TIMEOUT_ENV = "LOCAL_LLM_SERVER_TIMEOUT"
SESSION_KEEP_ALIVE = "60m"
"""A non-persisted session's keep_alive: refreshed by every request, and bounded so that a session whose owner died
does not hold the VRAM forever."""


def keep_alive_for(persist: bool) -> str | int:
    """Persisted sessions keep the model loaded forever (any negative value); others for SESSION_KEEP_ALIVE."""
    return -1 if persist else SESSION_KEEP_ALIVE


@dataclass
class Timeouts:
    server_s: float = 30.0
    """How long a started `ollama serve` may take to answer."""
    load_s: float = 300.0
    """How long a model load may take (Ollama's own OLLAMA_LOAD_TIMEOUT default)."""


async def prepare(
    backend: str, spec: LlmSpec, *, slots: int | None = None, progress: Progress, timeouts: Timeouts,
    server_log: Path,
) -> dict[str, Any]:
    if backend == "ollama":
        ready = await _prepare_ollama(spec, progress=progress, timeouts=timeouts, server_log=server_log)
    elif backend == "embedded":
        ready = await _prepare_embedded(spec, progress=progress)
    else:
        return await _prepare_openai(spec, slots=slots, progress=progress)
    # Neither Ollama's API nor the embedded model says how many requests it takes at once.
    return {**ready, "slots": slots or 1, "slots_from": "setting" if slots else "default"}


async def _prepare_ollama(
    spec: LlmSpec, *, progress: Progress, timeouts: Timeouts, server_log: Path
) -> dict[str, Any]:
    base_url = ollama_base_url()
    backend = OllamaBackend(base_url)
    try:
        await progress(0, None, f"checking Ollama at {base_url}")
        version = await backend.version()
        server: dict[str, Any] = {}
        if version is None:
            server = await _start_ollama(backend, progress=progress, timeout_s=timeouts.server_s, log_path=server_log)
            version = server["server_version"]
        gpus = await machine_report(base_url)
        model = spec.model or await _default_ollama_model(backend, gpus)
        if not await backend.has_model(model):
            try:
                await backend.pull(model, progress=progress)
            except ModelMissing as exc:
                raise ModelMissing(
                    f"model {model!r} is not pulled and the pull failed ({exc}); pass --llm with a model from "
                    "`ollama list`, or check the name and the network and run enable again"
                ) from exc
        shown = await backend.show(model)
        capabilities = capabilities_from_show(shown)
        _check_generates(model, capabilities, gpus)
        context_length = context_length_from_show(shown)
        size = next((m.size_bytes for m in await backend.models()
                     if canonical_model(m.name) == canonical_model(model)), None)
        _check_vram(model, size, gpus)
        num_ctx = choose_num_ctx(model_context=context_length, free_vram_bytes=gpus.largest_free,
                                 model_size_bytes=size, known_context=gpus.server_context)
        keep_alive = keep_alive_for(spec.persist)
        await progress(0, None, f"loading {model} (num_ctx {num_ctx})")
        with anyio.fail_after(timeouts.load_s):
            await backend.load(model, num_ctx=num_ctx, keep_alive=keep_alive)
        return {"backend": "ollama", "base_url": base_url, "model": model, "num_ctx": num_ctx,
                "context_length": context_length, "size_bytes": size, "server_version": version,
                "keep_alive": keep_alive, "capabilities": capabilities, "parameters": parameter_count(shown),
                **server}
    finally:
        await backend.aclose()


async def _default_ollama_model(backend: OllamaBackend, gpus: GpuReport) -> str:
    """The table's model for this memory; without one (CPU only, a remote server's memory unknown), the first pulled
    model that generates text."""
    recommendation = recommend_for(gpus)
    if recommendation.model:
        return recommendation.model
    for pulled in await backend.models():
        # An embedding model pulled first would only be refused below: skip it here.
        if generates_text(capabilities_from_show(await backend.show(pulled.name))):
            return pulled.name
    raise UserError(
        f"{recommendation.reason}, and Ollama has no model pulled that generates text; pass --llm MODEL (e.g. a small "
        f"coder model such as {suggested_model(None)}) or use --backend embedded"
    )


def _check_generates(model: str, capabilities: list[str] | None, gpus: GpuReport) -> None:
    """Refused before loading: Ollama would answer 400 "does not support generate" to the load. A server too old to
    report capabilities (before v0.6.4) is not refused for that."""
    if not generates_text(capabilities):
        raise UserError(
            f"{model} cannot generate text: Ollama lists its capabilities as {', '.join(capabilities or [])} (no "
            f"`completion`; an embedding model?); choose a model that generates text, e.g. `--llm "
            f"{suggested_model(gpus.largest_total)}` (`local-llm capability` lists the ones for this GPU)"
        )


def _check_vram(model: str, size: int | None, gpus: GpuReport) -> None:
    total = sum(g.total_bytes for g in gpus.gpus)
    if gpus.gpus and size and size > total:
        recommendation = recommend_for(gpus)
        better = f" (for this GPU: {recommendation.model})" if recommendation.model else ""
        raise UserError(
            f"VRAM too small: {model} needs {size / GB:.1f} GB and the GPU(s) have {total / GB:.1f} GB; choose a "
            f"smaller model with --llm{better}, or use --backend embedded"
        )


async def _start_ollama(
    backend: OllamaBackend, *, progress: Progress, timeout_s: float, log_path: Path
) -> dict[str, Any]:
    exe = ollama_installed()
    if exe is None:
        raise UserError(
            f"Ollama does not answer at {backend.base_url} and is not installed; install it from "
            "https://ollama.com/download (or set OLLAMA_HOST to a running server), or use --backend embedded"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    await progress(0, None, f"starting `ollama serve` ({exe})")
    pid = spawn_detached([exe, "serve"], log_path)
    log.info("started ollama serve", pid=pid, exe=exe, log=str(log_path))
    started = time.monotonic()
    try:
        with anyio.fail_after(timeout_s):
            while (version := await backend.version()) is None:
                if not alive(pid):
                    raise UserError(
                        f"`ollama serve` exited right after it started; see {log_path} (a port in use? set "
                        "OLLAMA_HOST) and run enable again"
                    )
                await anyio.sleep(0.05)  # an external process coming up: nothing to wait on but its port
    except TimeoutError:
        raise UserError(
            f"`ollama serve` (pid {pid}) did not answer at {backend.base_url} within {timeout_s:.0f} s;"
            f" see {log_path}, then run enable again (${SERVER_TIMEOUT_ENV} sets a longer wait)"
        ) from None
    await progress(0, None, f"Ollama {version} answers after {time.monotonic() - started:.1f} s")
    return {"server_pid": pid, "server_started": True, "server_log": str(log_path), "server_version": version}


async def _prepare_embedded(spec: LlmSpec, *, progress: Progress) -> dict[str, Any]:
    backend = make_backend("embedded")
    model = spec.model or EMBEDDED_MODEL
    await backend.pull(model, progress=progress)
    context_length = await backend.context_length(model)
    # CPU inference: a larger context only costs prompt time; 8k holds the mechanical tasks it gets.
    num_ctx = choose_num_ctx(model_context=context_length, free_vram_bytes=None, work_tokens=8192)
    await progress(0, None, f"loading {model} in-process (num_ctx {num_ctx})")
    await backend.load(model, num_ctx=num_ctx, keep_alive=None)
    return {"backend": "embedded", "base_url": None, "model": model, "num_ctx": num_ctx,
            "context_length": context_length}


async def _prepare_openai(spec: LlmSpec, *, slots: int | None, progress: Progress) -> dict[str, Any]:
    backend = OpenAIBackend()
    try:
        await progress(0, None, f"checking the OpenAI-compatible server at {backend.base_url}")
        if await backend.version() is None:
            raise UserError(
                f"no OpenAI-compatible server answers at {backend.base_url}/v1/models; start it (e.g. "
                "`python -m llama_cpp.server --model FILE.gguf --port 8080`) or set $LOCAL_LLM_OPENAI_URL"
            )
        facts = await backend.facts()
        model = spec.model or (facts.models[0].name if facts.models else "")
        if not model:
            raise UserError(f"the server at {backend.base_url} lists no model; start it with one")
        await backend.pull(model, progress=progress)
        context_length = await backend.context_length(model)
        group = facts.groups.get(model)
        if group is None and len(facts.groups) == 1:
            group = next(iter(facts.groups.values()))
        # One request never gets more than one of the server's slots holds (llama.cpp answers a longer prompt with
        # an error; Ollama's /v1 cuts it silently), nor the smallest backend behind a gateway: num_ctx stays within
        # it, $LOCAL_LLM_NUM_CTX included.
        candidates = ((context_length, _model_source(facts)), (facts.slot_context, _slot_source(facts)),
                      (group.context if group else None, _group_source(group)))
        figures = [(c, f) for c, f in candidates if c]
        limit, limit_from = min(figures) if figures else (None, None)
        if limit is None and not os.environ.get(NUM_CTX_ENV):
            raise UserError(
                f"the server at {backend.base_url} ({facts.kind}) does not say how much context {model} holds, so "
                f"num_ctx would be a guess; set {NUM_CTX_ENV}=<tokens> to what one request may use there (behind a "
                "gateway: the smallest of its backends), then enable again (docs/gateways.md)"
            )
        num_ctx = choose_num_ctx(model_context=limit, free_vram_bytes=None)
        num_ctx = min(num_ctx, limit) if limit else num_ctx
        num_ctx_from = _num_ctx_source(num_ctx, limit, limit_from, forced=bool(os.environ.get(NUM_CTX_ENV)))
        await backend.load(model, num_ctx=num_ctx, keep_alive=None)
        warnings = _server_warnings(facts, backend.base_url, slots)
        for warning in warnings:
            log.warning(warning["code"], message=warning["message"], base_url=backend.base_url)
        gateway_slots = group.slots if group else None
        chosen = slots or facts.total_slots or gateway_slots
        slots_from = "setting" if slots else "server" if facts.total_slots else "gateway" if chosen else "default"
        return {"backend": "openai", "base_url": backend.base_url, "model": model, "num_ctx": num_ctx,
                "num_ctx_from": num_ctx_from, "context_length": context_length, "slots": chosen or 1,
                "slots_from": slots_from, "server_kind": facts.kind,
                "server_slots": facts.total_slots or gateway_slots, "slot_context": facts.slot_context or limit,
                "server_version": facts.version, "warnings": warnings}
    finally:
        await backend.aclose()


def _num_ctx_source(num_ctx: int, limit: int | None, limit_from: str | None, *, forced: bool) -> str:
    """Status's `num_ctx_from`: the figure num_ctx was taken from, in words."""
    if forced:
        return f"{NUM_CTX_ENV}, capped by {limit_from}" if limit and num_ctx == limit else NUM_CTX_ENV
    if num_ctx == limit:
        return str(limit_from)
    return f"the engine's choice (at most 8192 without a GPU report), within {limit_from}"


def _model_source(facts: ServerFacts) -> str:
    return {"llama.cpp": "llama.cpp's /v1/models meta.n_ctx_train", "vllm": "vLLM's max_model_len on /v1/models",
            "litellm": "LiteLLM's /v1/models max_input_tokens"}.get(facts.kind, f"{facts.kind}'s /v1/models")


def _slot_source(facts: ServerFacts) -> str:
    return {"llama.cpp": "llama.cpp's /props (one slot's context)", "vllm": "vLLM's max_model_len on /v1/models",
            "ollama": "Ollama's smallest default context"}.get(facts.kind, facts.kind)


def _group_source(group: GroupFacts | None) -> str:
    count = group.deployments if group else 0
    return f"LiteLLM's /v1/model/info (the smallest of {count} deployment{'s' if count != 1 else ''})"


def _server_warnings(facts: ServerFacts, base_url: str, slots: int | None) -> list[dict[str, str]]:
    warnings = []
    if facts.kind == "ollama":
        warnings.append({"code": "ollama_openai_endpoint", "message": (
            f"{base_url} is Ollama {facts.version}'s OpenAI-compatible /v1 endpoint, where num_ctx and keep_alive "
            "cannot be set: Ollama's default context applies (a longer prompt is cut silently, so num_ctx is kept "
            f"to {facts.slot_context}) and the model unloads after Ollama's default keep-alive; use Ollama's native "
            f"API instead: `local-llm enable --backend ollama` with OLLAMA_HOST={base_url}")})
    if slots and facts.total_slots and slots > facts.total_slots:
        warnings.append({"code": "slots_above_server", "message": (
            f"slots {slots} is more than the server's {facts.total_slots} (its -np): the other generations wait in "
            "the server's queue, where their first-token time limit already runs; use --slots "
            f"{facts.total_slots} or start the server with -np {slots}")})
    return warnings
