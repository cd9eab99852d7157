"""Apple Silicon: the unified memory a model may use on the GPU, read the way Ollama reads it.

Ollama takes Metal's `recommendedMaxWorkingSetSize` as the GPU's total and free memory (ollama/ollama
discover/gpu_info_darwin.m `getRecommendedMaxVRAM`, and discover/gpu_darwin.go at v0.12.3, commit 6b50f2b9c:
`TotalMemory = getRecommendedMaxVRAM(); FreeMemory = TotalMemory`; an Intel Mac gets the CPU only). This module asks
Metal through pyobjc when it is installed (`pip install pyobjc-framework-Metal`); without it, `iogpu.wired_limit_mb`
when it is set (the limit Metal's figure follows), else an estimate from `hw.memsize`, marked as one with its fraction.

The estimate: 2/3 of the memory up to 36 GiB, 3/4 above. Macs report about that or more: an M2 Max with 32 GB logs
`recommendedMaxWorkingSetSize = 22906.50 MB` (2/3; ollama/ollama#10395) and an M5 Max with 128 GB 107.5 GiB (0.84).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from engine.session.memory import GIB, MIB, GpuInfo, GpuReport, Probe

__all__ = ["SYSCTL_KEYS", "estimate_fraction", "metal_working_set", "parse_sysctl", "probe_metal", "unified_report"]

SYSCTL_KEYS = ("hw.memsize", "iogpu.wired_limit_mb", "hw.model", "machdep.cpu.brand_string", "hw.optional.arm64")


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl NAME...` output, `name: value` a line (`name = value` on old macOS); other lines are ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        for sep in (": ", " = "):
            name, found, value = line.partition(sep)
            if found and name and " " not in name.strip():
                values[name.strip()] = value.strip()
                break
    return values


def estimate_fraction(memsize: int) -> tuple[int, int]:
    return (2, 3) if memsize <= 36 * GIB else (3, 4)


def _int(values: Mapping[str, str], name: str) -> int | None:
    try:
        return int(values[name])
    except (KeyError, ValueError):
        return None


def _report(result: str, **kwargs: Any) -> GpuReport:
    return GpuReport(probes=(Probe("metal", result),), **kwargs)


def unified_report(values: Mapping[str, str], *, metal_bytes: int | None, metal_note: str) -> GpuReport:
    """The GPU's share of the unified memory from sysctl values (and Metal's figure when it could be read)."""
    brand = values.get("machdep.cpu.brand_string", "")
    apple_silicon = values.get("hw.optional.arm64") == "1" or brand.startswith("Apple")
    if not apple_silicon:
        return _report(f"not Apple Silicon ({brand or values.get('hw.model') or 'unknown CPU'}): Ollama runs on the "
                       "CPU there")
    memsize = _int(values, "hw.memsize")
    wired_mb = _int(values, "iogpu.wired_limit_mb")
    name = f"{brand or values.get('hw.model') or 'Apple Silicon'} (unified memory)"
    if metal_bytes:
        total, basis = metal_bytes, "Metal's recommendedMaxWorkingSetSize (what Ollama uses)"
    elif wired_mb:
        total = wired_mb * MIB if memsize is None else min(wired_mb * MIB, memsize)
        basis = f"iogpu.wired_limit_mb = {wired_mb} (the GPU's wired-memory limit; {metal_note})"
    elif memsize:
        num, den = estimate_fraction(memsize)
        total = memsize * num // den
        basis = (f"estimate: {num}/{den} of hw.memsize {memsize / GIB:g} GiB ({metal_note}; iogpu.wired_limit_mb "
                 f"{'is 0, the system default' if wired_mb == 0 else 'unset'}); Metal usually allows this much or more")
    else:
        return _report("sysctl gave no hw.memsize")
    gpu = GpuInfo(index=0, name=name, total_bytes=total, free_bytes=total, used_bytes=0, source="metal")
    return _report(f"{name}: {total / GIB:.1f} GiB for the GPU ({basis})", gpus=(gpu,), unified=True, basis=basis)


def metal_working_set() -> tuple[int | None, str]:
    """Metal's recommendedMaxWorkingSetSize through pyobjc, or None with the reason."""
    try:
        metal = importlib.import_module("Metal")  # pyobjc-framework-Metal, macOS only
    except ImportError:
        return None, "no Metal binding: pip install pyobjc-framework-Metal"
    device = metal.MTLCreateSystemDefaultDevice()
    if device is None:
        return None, "Metal has no default device"
    return int(device.recommendedMaxWorkingSetSize()), "Metal"


def probe_metal(*, platform: str = sys.platform) -> GpuReport:
    if platform != "darwin":
        return _report(f"not macOS ({platform})")
    try:
        # An unknown name (iogpu.* before macOS 14) is an error on stderr; the others are still printed.
        out = subprocess.run(["sysctl", *SYSCTL_KEYS], check=False, capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return _report(f"sysctl failed ({exc})")
    metal_bytes, note = metal_working_set()
    return unified_report(parse_sysctl(out), metal_bytes=metal_bytes, metal_note=note)
