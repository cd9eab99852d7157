"""What `capability` and `status` answer: the machine (GPUs and which probe found them, or a remote server's figures;
Ollama, the embedded model, the recommended model and the other candidates for this memory, with what is pulled and
the num_ctx each would get) and the session (state, backend, model and its capabilities, what is loaded, VRAM and its
source, runs in flight)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio

from engine.errors import UserError
from engine.executor.backends import NoBackend, ollama_installed, select_backend
from engine.executor.backends.base import Backend, BackendError, ModelInfo
from engine.executor.backends.embedded import EMBEDDED_MODEL, embedded_installed
from engine.executor.backends.ollama import OllamaBackend, canonical_model, context_length_from_show, ollama_base_url
from engine.executor.backends.ollama_features import ServerFeatures
from engine.session.gpu import GpuReport, vram_summary
from engine.session.machine import machine_report
from engine.session.recommendations import (
    TABLE_CHECKED,
    PulledModel,
    candidates,
    capabilities_from_show,
    recommend_for,
    tiers_summary,
)
from states import SessionData

__all__ = ["PROBE_TIMEOUT_S", "capability", "liveness", "model_dict", "status_view"]

PROBE_TIMEOUT_S = 2.0
"""How long `status` waits for a server it did not probe already (an idle session's, or Ollama's)."""


def model_dict(m: ModelInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"name": m.name}
    if m.size_bytes is not None:
        out["size_bytes"] = m.size_bytes
    if m.size_vram is not None:
        out["size_vram_bytes"] = m.size_vram
        if m.size_bytes:
            out["on_gpu"] = round(m.size_vram / m.size_bytes, 2)
    if m.context_length is not None:
        out["context_length"] = m.context_length
    if "expires_at" in m.details:
        out["expires_at"] = m.details["expires_at"]
    return out


@dataclass(frozen=True)
class _Sized:
    size_vram: int | None


def status_view(
    state: str, data: SessionData, *, loaded: Sequence[dict[str, Any]], runs_active: int, gpus: GpuReport,
    server: str | None, server_pid_alive: bool,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "state": state,
        "backend": data.backend,
        "model": data.model,
        "persist": data.persist,
        "loaded": list(loaded),
        "runs_active": runs_active,
        "num_ctx": data.num_ctx,
        "vram": vram_summary(gpus, [_Sized(m.get("size_vram_bytes")) for m in loaded]),
        "reason": data.reason,
        "base_url": data.base_url,
        "context_length": data.context_length,
        "capabilities": data.capabilities,
        "keep_alive": data.keep_alive,
        "slots": data.slots,
        "slots_from": data.slots_from,
        "answer_form": data.answer_form,
    }
    if data.num_ctx_from is not None:
        status["num_ctx_from"] = data.num_ctx_from
    if data.parameters is not None:
        status["parameters"] = data.parameters
    if data.backend == "ollama" and data.model:
        status.update(ollama_guards(data.server_version, data.capabilities))
    if data.server_kind is not None:
        status["server_kind"] = data.server_kind
        status["slot_context"] = data.slot_context
        if note := _context_note(data):
            status["context_note"] = note
    if data.warnings:
        status["warnings"] = list(data.warnings)
    if server is not None:
        status["server"] = server
    if data.server_pid and server_pid_alive:
        status["server_pid"] = data.server_pid
    return status


async def liveness(
    state: str, data: SessionData, *, loaded: Sequence[dict[str, Any]], server: str | None,
    backend: Callable[[], Backend] | None,
) -> dict[str, bool]:
    """`running`: whether the backend's server answers (the embedded model runs in this process: whether it is
    installed; a session never enabled: whether Ollama answers at OLLAMA_HOST). `model_loaded`: whether the session's
    model is loaded there now (the embedded one: in this process)."""
    if data.backend == "embedded" and backend is not None:
        try:
            return {"running": embedded_installed(), "model_loaded": bool(await backend().loaded())}
        except UserError:  # the model's package went away since enable
            return {"running": False, "model_loaded": False}
    models: list[str] = [str(m.get("name")) for m in loaded]
    if backend is None:  # never enabled: the default backend's server
        probe = OllamaBackend(ollama_base_url())
        try:
            with anyio.move_on_after(PROBE_TIMEOUT_S):
                return {"running": await probe.version() is not None, "model_loaded": False}
            return {"running": False, "model_loaded": False}
        finally:
            await probe.aclose()
    if server is not None:
        running = server == "answering"
    else:  # idle: status_view shows nothing loaded, but a server (and a model kept with :persist) may run
        try:
            with anyio.fail_after(PROBE_TIMEOUT_S):
                models = [m.name for m in await backend().loaded()]
            running = True
        except (UserError, TimeoutError):
            running = False
    wanted = canonical_model(data.model) if data.model else None
    return {"running": running, "model_loaded": running and any(canonical_model(m) == wanted for m in models)}


def ollama_guards(version: str | None, capabilities: Sequence[str] | None) -> dict[str, str]:
    """What the session's Ollama does with an overlong prompt and with a model's thinking, in words."""
    note = ServerFeatures(version).truncation_note()
    guards = {"prompt_guard": note or f"Ollama {version} refuses an overlong prompt (truncate: false), with numbers"}
    if capabilities is not None and "thinking" in capabilities:
        guards["thinking"] = "the model can think: delegations ask it not to (think: false) unless a call asks"
    return guards


async def _pulled(probe: OllamaBackend) -> dict[str, PulledModel]:
    """Every pulled model with its size, and its context and capabilities from `/api/show` (one local request each)."""
    out = {}
    for m in await probe.models():
        try:
            shown = await probe.show(m.name)
        except BackendError:  # removed between tags and show: listed without what show would add
            shown = {}
        out[canonical_model(m.name)] = PulledModel(m.name, m.size_bytes, context_length_from_show(shown),
                                                   capabilities_from_show(shown))
    return out


def _context_note(data: SessionData) -> str | None:
    """How the server's context limits num_ctx: llama.cpp's server divides its context across its slots."""
    if data.server_kind == "llama.cpp" and data.slot_context:
        return (f"llama.cpp's server divides its context across its {data.server_slots or '?'} slots (n_ctx / slots, "
                f"unless started with a unified KV cache); one request may use {data.slot_context} tokens, so "
                f"num_ctx is {data.num_ctx}")
    if data.server_kind == "litellm" and data.slot_context:
        return (f"LiteLLM routes each request to one of its {data.server_slots or '?'} deployment slots; the smallest "
                f"deployment holds {data.slot_context} tokens; num_ctx is {data.num_ctx}")
    if data.server_kind == "vllm" and data.slot_context:
        return f"vLLM serves up to max_model_len {data.slot_context} tokens per request; num_ctx is {data.num_ctx}"
    return None


async def capability() -> dict[str, Any]:
    gpus = await machine_report(ollama_base_url())
    reasons: list[str] = []
    if gpus.reason:
        reasons.append(gpus.reason)
    elif gpus.basis:
        reasons.append(f"memory from {gpus.source}: {gpus.basis}")
    probe = OllamaBackend(ollama_base_url())
    pulled: dict[str, PulledModel] | None = None
    try:
        version = await probe.version()
        pulled = await _pulled(probe) if version else None
    except BackendError as exc:
        version, pulled = None, None
        reasons.append(str(exc))
    finally:
        await probe.aclose()
    models = [{**model_dict(ModelInfo(p.name, p.size_bytes, p.context_length)), "capabilities": p.capabilities}
              for p in (pulled or {}).values()]
    installed = ollama_installed()
    recommendation = recommend_for(gpus)
    recommended_pulled = bool(recommendation.model and pulled and canonical_model(recommendation.model) in pulled)
    reasons.append(recommendation.reason + (" (already pulled)" if recommended_pulled else
                                            " (not pulled yet: enable pulls it)" if recommendation.model else ""))
    if pulled is None:
        reasons.append("Ollama does not answer: which candidates are pulled is unknown (`pulled: null`)")
    embedded = embedded_installed()
    if embedded:
        models.append({"name": EMBEDDED_MODEL, "backend": "embedded"})
    backend: str | None
    try:
        selection = await select_backend(None, ollama_running=version is not None)
        backend = selection.name
        reasons.append(f"backend {selection.name}: {selection.reason}")
    except (NoBackend, UserError) as exc:  # UserError: a bad $LOCAL_LLM_BACKEND
        backend = None
        reasons.append(str(exc))
    return {
        "can_enable": backend is not None,
        "gpus": gpus.as_list(),
        "memory": gpus.memory_view(),
        "backend": backend,
        "ollama": {"installed": installed is not None, "running": version is not None, "version": version,
                   "url": ollama_base_url(), "path": installed},
        "embedded": {"installed": embedded, "model": EMBEDDED_MODEL if embedded else None},
        "models": models,
        "recommended_model": recommendation.model,
        "recommended_pulled": recommended_pulled,
        "candidates": candidates(total_vram=gpus.largest_total, free_vram=gpus.largest_free, pulled=pulled,
                                 known_context=gpus.server_context),
        "tiers": tiers_summary(),
        "table_checked": TABLE_CHECKED,
        "reasons": reasons,
    }
