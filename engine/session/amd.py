"""AMD GPUs on Linux from the amdgpu driver's sysfs, with the rules Ollama applies.

Mirrors ollama/ollama discover/amd_linux.go `AMDGetGPUInfo` as of v0.12.3 (commit 6b50f2b9c, the last before GPU
discovery moved into the runners in bc8909fb3; the same sysfs reads remain in discover/amd.go):

- the driver is there when /sys/module/amdgpu exists;
- every KFD topology node (/sys/class/kfd/kfd/topology/nodes/N/properties, in node order) with a non-zero
  `gfx_target_version` is a GPU (zero is a CPU; gfx000 is a masked GPU, skipped); the version is decimal
  MMMmmpp -> `gfx{M}{m:x}{p:x}`;
- its memory comes from the DRM device (/sys/class/drm/card*/device) whose `vendor`, `device` and `unique_id` (hex)
  match the node's non-zero ids: `mem_info_vram_total`, and `mem_info_vram_used` for the free figure;
- ROCR_VISIBLE_DEVICES, else HIP_VISIBLE_DEVICES, else GPU_DEVICE_ORDINAL hide the others (an index among the GPUs
  found, or `GPU-<unique_id as 16 hex digits>`);
- skipped: under 1 GiB of VRAM (an integrated GPU, `IGPUMemLimit`), gfx major under 9 (`RocmComputeMajorMin`), and a
  gfx target the ROCm library has no kernels for (rocblas/library/TensileLibrary_lazy_<gfx>.dat), unless
  HSA_OVERRIDE_GFX_VERSION is set. Where no ROCm library is found here (Ollama's is next to its executable, on
  another path than ours), the gfx target is reported unchecked rather than refused.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.session.memory import GIB, GpuInfo, GpuReport, Probe

__all__ = ["AmdCard", "gfx_target", "parse_properties", "probe_amdgpu", "read_cards", "rocm_library_dirs"]

IGPU_LIMIT = GIB
"""Ollama's IGPUMemLimit: integrated GPUs report a few hundred MiB of carved-out VRAM."""
ROCM_MAJOR_MIN = 9


@dataclass(frozen=True)
class AmdCard:
    node: str
    gfx: str
    major: int
    vendor: int
    device: int
    unique_id: int
    total_bytes: int
    used_bytes: int

    @property
    def id(self) -> str:
        return f"GPU-{self.unique_id:016x}" if self.unique_id else ""

    @property
    def name(self) -> str:
        return f"AMD {self.vendor:04x}:{self.device:04x} {self.gfx}"


def parse_properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            out[fields[0]] = fields[1]
    return out


def gfx_target(version: str) -> tuple[int, int, int] | None:
    """`gfx_target_version` 110003 -> (11, 0, 3); None when malformed (Ollama skips the line)."""
    if len(version) < 5 or not version.isdigit():
        return None
    return int(version[:-4]), int(version[-4:-2]), int(version[-2:])


def _read_hex(path: Path) -> int | None:
    try:
        return int(path.read_text().strip().removeprefix("0x"), 16)
    except (OSError, ValueError):
        return None


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


def _drm_memory(root: Path, ids: Sequence[tuple[int, str]]) -> tuple[int, int]:
    for device_dir in sorted((root / "sys/class/drm").glob("card*/device")):
        if all(value == 0 or _read_hex(device_dir / name) == value for value, name in ids):
            return _read_int(device_dir / "mem_info_vram_total"), _read_int(device_dir / "mem_info_vram_used")
    return 0, 0


def read_cards(root: Path) -> list[AmdCard]:
    """Every GPU node of the KFD topology under `root`, with its DRM memory figures (0 when unmatched)."""
    nodes_dir = root / "sys/class/kfd/kfd/topology/nodes"
    nodes = sorted((p for p in nodes_dir.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    cards = []
    for node in nodes:
        try:
            props = parse_properties((node / "properties").read_text())
        except OSError:
            continue
        raw = props.get("gfx_target_version", "")
        version = gfx_target(raw)
        if raw == "0" or version is None or version == (0, 0, 0):
            continue  # a CPU node, a malformed line, or a masked GPU (gfx000)
        major, minor, patch = version
        vendor, device, unique = (int(props.get(k, "0")) for k in ("vendor_id", "device_id", "unique_id"))
        total, used = _drm_memory(root, [(vendor, "vendor"), (device, "device"), (unique, "unique_id")])
        cards.append(AmdCard(node.name, f"gfx{major}{minor:x}{patch:x}", major, vendor, device, unique, total, used))
    return cards


def rocm_library_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where Ollama (discover/amd_common.go, path.go) looks for a ROCm library: next to its executable
    (../lib/ollama/rocm), HIP_PATH/bin, LD_LIBRARY_PATH, /opt/rocm/lib, /usr/lib64."""
    dirs = []
    if exe := shutil.which("ollama", path=env.get("PATH")):
        dirs.append(Path(exe).resolve().parent.parent / "lib/ollama/rocm")
    if hip := env.get("HIP_PATH"):
        dirs.append(Path(hip) / "bin")
    dirs += [Path(p) for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    dirs += [Path("/opt/rocm/lib"), Path("/usr/lib64")]
    return [d for d in dirs if (d / "rocblas").is_dir()]


def _supported(dirs: Sequence[Path]) -> set[str]:
    return {f.name.removeprefix("TensileLibrary_lazy_").removesuffix(".dat")
            for d in dirs for f in (d / "rocblas/library").glob("TensileLibrary_lazy_gfx*.dat")}


def _visible(env: Mapping[str, str]) -> list[str]:
    for name in ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"):
        if value := env.get(name):
            return value.split(",")
    return []


def probe_amdgpu(
    *, root: Path = Path("/"), env: Mapping[str, str] | None = None, rocm_dirs: Sequence[Path] | None = None
) -> GpuReport:
    env = os.environ if env is None else env
    if not (root / "sys/module/amdgpu").exists():
        return GpuReport(probes=(Probe("amdgpu", "no amdgpu driver (/sys/module/amdgpu absent)"),))
    dirs = rocm_library_dirs(env) if rocm_dirs is None else list(rocm_dirs)
    supported = _supported(dirs)
    visible, override = _visible(env), env.get("HSA_OVERRIDE_GFX_VERSION")
    gpus: list[GpuInfo] = []
    notes: list[str] = []
    for index, card in enumerate(read_cards(root)):
        skip = None
        if visible and not ((card.id and card.id in visible) or str(index) in visible):
            skip = "hidden by *_VISIBLE_DEVICES"
        elif card.total_bytes < IGPU_LIMIT:
            skip = f"integrated GPU ({card.total_bytes / GIB:.2f} GiB of VRAM, under Ollama's 1 GiB)"
        elif card.major < ROCM_MAJOR_MIN:
            skip = f"{card.gfx} is too old for ROCm (gfx9 or later)"
        elif not override and dirs and card.gfx not in supported:
            skip = f"{card.gfx} is not among the ROCm library's targets ({', '.join(sorted(supported))})"
        if skip:
            notes.append(f"{card.name} skipped: {skip}")
            continue
        checked = "" if override or dirs else ", gfx target unchecked (no ROCm library here)"
        notes.append(f"{card.name}: {card.total_bytes / GIB:.1f} GiB of VRAM{checked}")
        gpus.append(GpuInfo(index=len(gpus), name=card.name, total_bytes=card.total_bytes,
                            free_bytes=card.total_bytes - card.used_bytes, used_bytes=card.used_bytes,
                            source="amdgpu"))
    result = "; ".join(notes) or "the amdgpu driver is loaded but KFD lists no GPU"
    return GpuReport(gpus=tuple(gpus), probes=(Probe("amdgpu", result),),
                     basis="amdgpu's mem_info_vram_total per card" if gpus else None)
