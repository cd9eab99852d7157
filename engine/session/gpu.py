"""GPU capability through NVML (nvidia-ml-py) and the session's context size (the VRAM -> model table is in
recommendations.py).

No NVIDIA library (or no driver, or no GPU) is a normal answer: CPU only, with the reason NVML gave.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import structlog

__all__ = [
    "GB",
    "GIB",
    "GpuInfo",
    "GpuReport",
    "choose_num_ctx",
    "probe_gpus",
    "vram_summary",
]

log = structlog.get_logger(__name__)

GB = 1_000_000_000
GIB = 1 << 30
NUM_CTX_ENV = "LOCAL_LLM_NUM_CTX"
KV_BYTES_PER_TOKEN = 256 * 1024


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    used_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_gb": round(self.total_bytes / GB, 1), "free_gb": round(self.free_bytes / GB, 1)}


@dataclass(frozen=True)
class GpuReport:
    gpus: tuple[GpuInfo, ...] = ()
    driver: str | None = None
    reason: str | None = None
    """Why there are no GPUs, when there are none (NVML's own message)."""

    @property
    def largest_total(self) -> int | None:
        return max((g.total_bytes for g in self.gpus), default=None)

    @property
    def largest_free(self) -> int | None:
        return max((g.free_bytes for g in self.gpus), default=None)

    def as_list(self) -> list[dict[str, Any]]:
        return [{**g.as_dict(), "driver": self.driver} for g in self.gpus]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_gpus() -> GpuReport:
    """Every NVIDIA GPU's name, total and free VRAM, and the driver version; CPU only when NVML is unavailable."""
    try:
        import pynvml
    except ImportError:
        return GpuReport(reason="nvidia-ml-py is not installed (pip install nvidia-ml-py); assuming CPU only")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        # NVMLError_LibraryNotFound / DriverNotLoaded: a machine without NVIDIA's driver.
        return GpuReport(reason=f"NVML unavailable ({exc}); CPU only")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append(GpuInfo(index=index, name=_text(pynvml.nvmlDeviceGetName(handle)),
                                total_bytes=int(memory.total), free_bytes=int(memory.free),
                                used_bytes=int(memory.used)))
        return GpuReport(gpus=tuple(gpus), driver=driver, reason=None if gpus else "NVML found no GPU; CPU only")
    except pynvml.NVMLError as exc:
        log.warning("NVML query failed", error=str(exc))
        return GpuReport(reason=f"NVML query failed ({exc}); CPU only")
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
) -> int:
    """One context size for the whole session (changing it makes Ollama reload the model).

    The smallest of: the model's trained context, what the VRAM left beside the weights holds for the KV cache, and
    what the work needs (prompt + context files + answer; 16k by default). Rounded down to a power of two, at least
    `floor` (but never above the model's own context). $LOCAL_LLM_NUM_CTX overrides the choice.
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
        limits.append(8192)
    chosen = max(floor, 1 << max(0, int(min(limits))).bit_length() - 1) if min(limits) > 0 else floor
    if model_context:
        chosen = min(chosen, model_context)
    return int(chosen)


def vram_summary(report: GpuReport, loaded: Sequence[Any] = ()) -> dict[str, Any]:
    """Status's `vram`: totals from NVML and what the loaded models hold on the GPU."""
    return {
        "total_bytes": sum(g.total_bytes for g in report.gpus) or None,
        "free_bytes": sum(g.free_bytes for g in report.gpus) if report.gpus else None,
        "used_by_models_bytes": sum(int(getattr(m, "size_vram", 0) or 0) for m in loaded),
        "gpus": [g.name for g in report.gpus],
    }

