"""AMD GPUs from the amdgpu driver's sysfs (engine/session/amd.py), with Ollama's rules (discover/amd_linux.go,
v0.12.3), driven by sysfs trees recorded on real machines (recordings/amdgpu/*/: the notes beside each tree name its source)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.session.amd import gfx_target, parse_properties, probe_amdgpu, read_cards
from engine.session.memory import GIB, MIB, GpuInfo, GpuReport
from engine.session.recommendations import recommend_for

RECORDINGS = Path(__file__).parent / "recordings" / "amdgpu"


def machine(tmp_path: Path, name: str) -> Path:
    """The recorded tree as a sysfs root, with the driver loaded (sys/module/amdgpu) as on that machine."""
    root = tmp_path / name
    shutil.copytree(RECORDINGS / name, root)
    (root / "sys/module/amdgpu").mkdir(parents=True)
    return root


def test_kfd_properties_and_the_gfx_version_read_as_ollama_reads_them() -> None:
    props = parse_properties((RECORDINGS / "phoenix/sys/class/kfd/kfd/topology/nodes/1/properties").read_text())
    assert (props["gfx_target_version"], props["vendor_id"], props["device_id"]) == ("110003", "4098", "5567")
    assert gfx_target("110003") == (11, 0, 3) and gfx_target("90402") == (9, 4, 2) and gfx_target("0") is None


def test_the_phoenix_apu_maps_its_kfd_node_to_its_drm_card_and_reads_its_vram(tmp_path: Path) -> None:
    (card,) = read_cards(machine(tmp_path, "phoenix"))  # node 0 is the CPU
    assert (card.gfx, card.vendor, card.device, card.unique_id) == ("gfx1103", 0x1002, 0x15BF, 0)
    assert (card.total_bytes, card.used_bytes) == (4 * GIB, 1272893440)


def test_a_4_gib_carve_out_counts_as_a_card_with_its_gfx_target_unchecked_without_rocm(tmp_path: Path) -> None:
    report = probe_amdgpu(root=machine(tmp_path, "phoenix"), env={}, rocm_dirs=[])
    (gpu,) = report.gpus
    assert (gpu.source, gpu.total_bytes, gpu.free_bytes) == ("amdgpu", 4 * GIB, 4 * GIB - 1272893440)
    assert report.source == "amdgpu" and "gfx target unchecked" in report.probes[0].result


def test_a_gfx_target_the_rocm_library_lacks_is_skipped_unless_overridden(tmp_path: Path) -> None:
    rocm = tmp_path / "rocm"
    (rocm / "rocblas/library").mkdir(parents=True)
    (rocm / "rocblas/library/TensileLibrary_lazy_gfx1100.dat").touch()
    root = machine(tmp_path, "phoenix")
    skipped = probe_amdgpu(root=root, env={}, rocm_dirs=[rocm])
    assert skipped.gpus == () and "gfx1103 is not among the ROCm library's targets (gfx1100)" in skipped.probes[0].result
    overridden = probe_amdgpu(root=root, env={"HSA_OVERRIDE_GFX_VERSION": "11.0.0"}, rocm_dirs=[rocm])
    assert len(overridden.gpus) == 1


def test_the_strix_point_apus_512_mib_is_skipped_as_an_integrated_gpu(tmp_path: Path) -> None:
    report = probe_amdgpu(root=machine(tmp_path, "strixpoint"), env={}, rocm_dirs=[])
    assert report.gpus == ()
    assert "gfx1150 skipped: integrated GPU (0.50 GiB of VRAM, under Ollama's 1 GiB)" in report.probes[0].result


@pytest.mark.parametrize(("env", "kept"), [
    ({"ROCR_VISIBLE_DEVICES": "1"}, 0), ({"HIP_VISIBLE_DEVICES": "0"}, 1), ({"GPU_DEVICE_ORDINAL": "0,1"}, 1),
    ({"ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "0"}, 0),
])
def test_visible_devices_hide_the_other_cards_with_rocr_first(tmp_path: Path, env: dict[str, str], kept: int) -> None:
    assert len(probe_amdgpu(root=machine(tmp_path, "phoenix"), env=env, rocm_dirs=[]).gpus) == kept


def test_without_the_driver_the_probe_says_so(tmp_path: Path) -> None:
    report = probe_amdgpu(root=tmp_path, env={})
    assert report.gpus == () and report.probes[0].result == "no amdgpu driver (/sys/module/amdgpu absent)"


def test_a_24_gb_amd_card_gets_the_24_gb_tier() -> None:
    # An RX 7900 XTX reports 24560 MiB (`lact cli info` in ilya-zlobintsev/LACT#533); no recorded sysfs tree of a
    # 24 GB AMD card was found, so this drives the recommendation from that figure, not through the reader.
    total = 24560 * MIB
    report = GpuReport(gpus=(GpuInfo(0, "AMD 1002:744c gfx1100", total, total, 0, source="amdgpu"),))
    recommendation = recommend_for(report)
    assert recommendation.model == "qwen3-coder:30b" and "VRAM (amdgpu)" in recommendation.reason
