"""What memory a model may use on this machine, and the session's context size (the VRAM -> model table is in
recommendations.py).

Three probes, each mirroring what Ollama itself reads (docs/gpus.md): NVML (nvidia-ml-py), Metal on Apple Silicon
(apple.py) and the amdgpu driver's sysfs on Linux (amd.py). Every card any of them finds is one GpuInfo, and the tier
follows the same rule whatever the vendor: the largest card. None of them finding anything is a normal answer: CPU
only, with the reason each probe gave.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import structlog

from engine.session import amd, apple
from engine.session.memory import GB, GIB, GpuInfo, GpuReport, Probe

__all__ = [
    "GB",
    "GIB",
    "GpuInfo",
    "GpuReport",
    "Probe",
    "choose_num_ctx",
    "probe_gpus",
    "probe_nvml",
    "vram_summary",
]

log = structlog.get_logger(__name__)

NUM_CTX_ENV = "LOCAL_LLM_NUM_CTX"
KV_BYTES_PER_TOKEN = 256 * 1024


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_gpus() -> GpuReport:
    """This machine's GPUs from every probe (NVML, Metal, amdgpu); CPU only, with each probe's reason, when none
    finds one."""
    reports = [probe_nvml(), apple.probe_metal(), amd.probe_amdgpu()]
    probes = tuple(p for r in reports for p in r.probes)
    gpus = tuple(g for r in reports for g in r.gpus)
    if not gpus:
        return GpuReport(reason="; ".join(f"{p.name}: {p.result}" for p in probes) + "; CPU only", probes=probes)
    found = [r for r in reports if r.gpus]
    return GpuReport(gpus=gpus, driver=found[0].driver, unified=any(r.unified for r in found),
                     basis="; ".join(r.basis for r in found if r.basis) or None, probes=probes)


def _nvml(result: str, **kwargs: Any) -> GpuReport:
    return GpuReport(probes=(Probe("nvml", result),), **kwargs)


def probe_nvml() -> GpuReport:
    """Every NVIDIA GPU's name, total and free VRAM, and the driver version; none, with NVML's reason, without."""
    try:
        import pynvml
    except ImportError:
        return _nvml("nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        # NVMLError_LibraryNotFound / DriverNotLoaded: a machine without NVIDIA's driver.
        return _nvml(f"NVML unavailable ({exc})")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(index=index, name=_text(pynvml.nvmlDeviceGetName(handle)),
                                total_bytes=int(memory.total), free_bytes=int(memory.free),
                                used_bytes=int(memory.used)))
        found = f"{len(gpus)} NVIDIA GPU(s), driver {driver}" if gpus else "NVML found no GPU"
        return _nvml(found, gpus=tuple(gpus), driver=driver if gpus else None,
                     basis="NVML's total VRAM per card" if gpus else None)
    except pynvml.NVMLError as exc:
        log.warning("NVML query failed", error=str(exc))
        return _nvml(f"NVML query failed ({exc})")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def choose_num_ctx(
    *,
    model_context: int | None,
    free_vram_bytes: int | None,
    model_size_bytes: int | None = None,
    work_tokens: int = 16384,
    floor: int = 2048,
    known_context: int | None = None,
) -> int:
    """One context size for the whole session (changing it makes Ollama reload the model).

    The smallest of: the model's trained context, what the VRAM left beside the weights holds for the KV cache, and
    what the work needs (prompt + context files + answer; 16k by default). Rounded down to a power of two, at least
    `floor` (but never above the model's own context). $LOCAL_LLM_NUM_CTX overrides the choice. With the memory
    unknown, 8k, or `known_context` (a context a remote server already runs a model at).
    """
    if override := os.environ.get(NUM_CTX_ENV):
        return max(512, int(override))
    limits = [work_tokens]
    if model_context:
        limits.append(model_context)
    if free_vram_bytes is not None:
        weights = model_size_bytes or 4 * GB
        # KV cache at fp16: ~128-512 KiB per token for 7B-33B models (less with grouped-query attention); 256 KiB is a
        # middle estimate. Ollama offloads layers to the CPU when it is short, so a miss costs speed, not a failure.
        per_token = KV_BYTES_PER_TOKEN
        spare = free_vram_bytes - weights
        limits.append(max(0, spare) // per_token)
    else:
        # CPU only: a bigger context costs RAM and, above all, prompt time.
        limits.append(known_context or 8192)
    chosen = max(floor, 1 << max(0, int(min(limits))).bit_length() - 1) if min(limits) > 0 else floor
    if model_context:
        chosen = min(chosen, model_context)
    return int(chosen)


def vram_summary(report: GpuReport, loaded: Sequence[Any] = ()) -> dict[str, Any]:
    """Status's `vram`: totals from the probe that found them (`source`) and what the loaded models hold on the
    GPU."""
    return {
        "total_bytes": sum(g.total_bytes for g in report.gpus) or report.server_bytes,
        "free_bytes": sum(g.free_bytes for g in report.gpus) if report.gpus else None,
        "used_by_models_bytes": sum(int(getattr(m, "size_vram", 0) or 0) for m in loaded),
        "gpus": [g.name for g in report.gpus],
        "source": report.source,
        "unified": report.unified,
        "basis": report.basis,
    }

