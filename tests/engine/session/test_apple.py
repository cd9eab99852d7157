"""Apple Silicon's unified memory (engine/session/apple.py), driven by recorded `sysctl` output of a real Mac
(recordings/sysctl/*.txt: each names the machine, the OS version, the command and where it was recorded)."""

from __future__ import annotations

from pathlib import Path

from engine.session.apple import parse_sysctl, probe_metal, unified_report
from engine.session.memory import GIB, MIB
from engine.session.recommendations import candidates, recommend_for, tier_for

RECORDINGS = Path(__file__).parent / "recordings" / "sysctl"
M3_MAX_128GB = RECORDINGS / "m3max-128gb.txt"


def recorded(path: Path) -> dict[str, str]:
    """The recording without its `#` header: what `sysctl` printed."""
    return parse_sysctl("\n".join(line for line in path.read_text().splitlines() if not line.startswith("#")))


def test_the_recorded_sysctl_output_of_a_128_gb_m3_max_parses_to_its_memory_and_arch() -> None:
    values = recorded(M3_MAX_128GB)
    assert values["hw.memsize"] == "137438953472" and values["hw.optional.arm64"] == "1"
    assert values["hw.targettype"] == "J516c" and "iogpu.wired_limit_mb" not in values


def test_without_metal_or_a_wired_limit_the_figure_is_an_estimate_that_says_its_fraction() -> None:
    report = unified_report(recorded(M3_MAX_128GB), metal_bytes=None, metal_note="no Metal binding")
    (gpu,) = report.gpus
    assert gpu.total_bytes == gpu.free_bytes == 96 * GIB
    assert (report.source, report.unified) == ("metal", True)
    assert "estimate: 3/4 of hw.memsize 128 GiB" in (report.basis or "") and "no Metal binding" in (report.basis or "")


def test_a_128_gb_mac_gets_the_largest_tier_and_its_big_alternative() -> None:
    report = unified_report(recorded(M3_MAX_128GB), metal_bytes=None, metal_note="no Metal binding")
    recommendation = recommend_for(report)
    assert recommendation.model == "qwen3-coder:30b"
    assert "unified memory the GPU may use" in recommendation.reason
    tier = tier_for(report.largest_total)
    assert tier is not None and tier.min_vram_gb == 64
    rows = candidates(total_vram=report.largest_total, free_vram=report.largest_free, pulled=None)
    assert {"model": "qwen3-coder-next", "fits": True} == {k: v for k, v in rows[1].items() if k in ("model", "fits")}


def test_a_36_gb_mac_gets_the_24_gb_tier_from_two_thirds_of_its_memory() -> None:
    # Not a recording (none with a citable source was found): the two sysctl values a 36 GB Apple Silicon Mac has.
    values = {"hw.memsize": str(36 * GIB), "hw.optional.arm64": "1", "iogpu.wired_limit_mb": "0"}
    report = unified_report(values, metal_bytes=None, metal_note="no Metal binding")
    assert report.largest_total == 24 * GIB
    assert "estimate: 2/3 of hw.memsize 36 GiB" in (report.basis or "") and "system default" in (report.basis or "")
    assert recommend_for(report).model == "qwen3-coder:30b"
    tier = tier_for(report.largest_total)
    assert tier is not None and tier.min_vram_gb == 24


def test_metals_own_figure_wins_then_the_wired_limit() -> None:
    values = {"hw.memsize": str(36 * GIB), "hw.optional.arm64": "1", "iogpu.wired_limit_mb": "30000"}
    metal = unified_report(values, metal_bytes=25 * GIB, metal_note="Metal")
    assert metal.largest_total == 25 * GIB and "recommendedMaxWorkingSetSize" in (metal.basis or "")
    wired = unified_report(values, metal_bytes=None, metal_note="no Metal binding")
    assert wired.largest_total == 30000 * MIB and "iogpu.wired_limit_mb = 30000" in (wired.basis or "")


def test_an_intel_mac_is_cpu_only_as_for_ollama() -> None:
    report = unified_report({"hw.memsize": str(16 * GIB), "machdep.cpu.brand_string": "Intel(R) Core(TM) i7"},
                            metal_bytes=None, metal_note="")
    assert report.gpus == () and "not Apple Silicon" in report.probes[0].result


def test_the_probe_says_why_it_finds_nothing_off_macos() -> None:
    report = probe_metal(platform="linux")
    assert report.gpus == () and report.probes[0].result == "not macOS (linux)"
