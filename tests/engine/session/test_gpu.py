"""GPU capability through NVML: absent (this machine has no NVIDIA library) and present (pynvml monkeypatched)."""

from __future__ import annotations

from types import SimpleNamespace

import pynvml
import pytest

from engine.session.gpu import GB, GIB, GpuReport, choose_num_ctx, probe_gpus

GPUS = [("NVIDIA GeForce RTX 4090", 24 * GIB, 20 * GIB), ("NVIDIA RTX A4000", 16 * GIB, 15 * GIB)]


def _raise_library_not_found() -> None:
    raise pynvml.NVMLError_LibraryNotFound()


@pytest.fixture
def nvml_present(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: calls.append("init"))
    monkeypatch.setattr(pynvml, "nvmlShutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(pynvml, "nvmlSystemGetDriverVersion", lambda: "550.54.14")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: len(GPUS))
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: i)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: GPUS[h][0])
    monkeypatch.setattr(
        pynvml, "nvmlDeviceGetMemoryInfo",
        lambda h: SimpleNamespace(total=GPUS[h][1], free=GPUS[h][2], used=GPUS[h][1] - GPUS[h][2]),
    )
    return calls


def test_without_an_nvidia_library_the_answer_is_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pynvml, "nvmlInit", _raise_library_not_found)
    report = probe_gpus()
    assert report.gpus == () and report.largest_total is None
    assert "CPU only" in (report.reason or "")


def test_the_real_probe_on_this_machine_never_raises() -> None:
    report = probe_gpus()
    assert isinstance(report, GpuReport)
    assert report.gpus or report.reason


def test_with_nvml_every_gpu_reports_name_vram_and_driver(nvml_present: list[str]) -> None:
    report = probe_gpus()
    assert [(g.name, g.total_bytes, g.free_bytes) for g in report.gpus] == GPUS
    assert report.driver == "550.54.14" and report.reason is None
    assert report.largest_total == 24 * GIB and report.largest_free == 20 * GIB
    assert report.as_list()[0]["driver"] == "550.54.14"
    assert nvml_present == ["init", "shutdown"]


def test_an_nvml_error_after_init_is_cpu_only_and_still_shuts_down(
    nvml_present: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", broken)
    report = probe_gpus()
    assert report.gpus == () and "CPU only" in (report.reason or "")
    assert nvml_present[-1] == "shutdown"


def test_num_ctx_is_the_smallest_of_model_vram_and_work_as_a_power_of_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_LLM_NUM_CTX", raising=False)
    # Plenty of VRAM: the work cap (16k) wins over a 160k model context.
    assert choose_num_ctx(model_context=163840, free_vram_bytes=80 * GB, model_size_bytes=9 * GB) == 16384
    # The model's own context is the limit.
    assert choose_num_ctx(model_context=4096, free_vram_bytes=80 * GB, model_size_bytes=4 * GB) == 4096
    # Little VRAM beside the weights: the KV cache budget limits it, rounded down to a power of two.
    tight = choose_num_ctx(model_context=16384, free_vram_bytes=int(7.5 * GB), model_size_bytes=4 * GB)
    assert tight < 16384 and tight & (tight - 1) == 0 and tight >= 2048
    # CPU only: 8k at most.
    assert choose_num_ctx(model_context=131072, free_vram_bytes=None) == 8192
    # Never above a small model context, even below the floor.
    assert choose_num_ctx(model_context=1024, free_vram_bytes=None) == 1024


def test_num_ctx_can_be_forced_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_LLM_NUM_CTX", "12288")
    assert choose_num_ctx(model_context=16384, free_vram_bytes=None) == 12288
