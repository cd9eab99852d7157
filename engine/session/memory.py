"""The machine's memory as every probe reports it (gpu.py for NVML, apple.py, amd.py; machine.py for a remote
Ollama): one GpuInfo a card, one GpuReport a machine, with the source and the reason each probe gave."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["GB", "GIB", "MIB", "GpuInfo", "GpuReport", "Probe"]

GB = 1_000_000_000
GIB = 1 << 30
MIB = 1 << 20


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    used_bytes: int
    source: str = "nvml"
    """Which probe found it: nvml, metal or amdgpu."""

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_gb": round(self.total_bytes / GB, 1), "free_gb": round(self.free_bytes / GB, 1)}


@dataclass(frozen=True)
class Probe:
    name: str
    """nvml, metal, amdgpu, or local (the local probes, when a remote server makes them moot)."""
    result: str


@dataclass(frozen=True)
class GpuReport:
    gpus: tuple[GpuInfo, ...] = ()
    driver: str | None = None
    reason: str | None = None
    """Why there are no GPUs, when there are none (what each probe said)."""
    unified: bool = False
    """Apple Silicon: the GPU shares the system's memory; the figure is what it may use of it."""
    basis: str | None = None
    """Which figure was used, in words (Metal's recommendedMaxWorkingSetSize, iogpu.wired_limit_mb, an estimate)."""
    probes: tuple[Probe, ...] = ()
    remote: bool = False
    """The Ollama server is another machine: local probes say nothing about it (machine.py)."""
    server_bytes: int | None = None
    """Remote: what the server's loaded models hold on its GPU (`size_vram` in /api/ps), a lower bound of its VRAM."""
    server_context: int | None = None
    """Remote: the largest context a loaded model runs at (`context_length` in /api/ps)."""

    @property
    def source(self) -> str:
        """nvml, metal, amdgpu (joined with + when several found cards), server, or none."""
        if self.remote:
            return "server"
        found = list(dict.fromkeys(g.source for g in self.gpus))
        return "+".join(found) or "none"

    @property
    def largest_total(self) -> int | None:
        """The figure advice follows: the largest card, or the remote server's lower bound."""
        return max((g.total_bytes for g in self.gpus), default=self.server_bytes)

    @property
    def largest_free(self) -> int | None:
        return max((g.free_bytes for g in self.gpus), default=None)

    def memory_view(self) -> dict[str, Any]:
        """`capability`'s `memory`: the figure advice uses, where it came from, and what every probe said."""
        return {"source": self.source, "unified": self.unified, "total_bytes": self.largest_total,
                "free_bytes": self.largest_free, "basis": self.basis,
                "probes": {p.name: p.result for p in self.probes}}

    def as_list(self) -> list[dict[str, Any]]:
        return [{**g.as_dict(), "driver": self.driver} for g in self.gpus]
