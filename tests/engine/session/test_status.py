"""The live reading of `status` (engine/session/status.py): the GPU report is reused while it is young, since `status`
is polled and each probe costs a worker thread and an NVML init; an idle session asks no backend."""

from __future__ import annotations

import anyio
import pytest

import engine.session.status as status_module
from engine.executor.backends.base import Backend
from engine.session.gpu import GpuReport
from engine.session.status import StatusReader
from states import SessionData

CPU_ONLY = GpuReport(reason="CPU only (test)")


def _no_backend(data: SessionData) -> Backend:
    raise AssertionError(f"an idle session asked for its backend ({data.backend})")


def _counted_probes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    probes: list[str] = []

    async def session_report(backend: str | None, base_url: str | None) -> GpuReport:
        probes.append(f"{backend} {base_url}")
        return CPU_ONLY

    monkeypatch.setattr(status_module, "session_report", session_report)
    return probes


@pytest.mark.anyio
async def test_status_polled_within_the_age_probes_the_gpus_once(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = _counted_probes(monkeypatch)
    reader = StatusReader(backend_for=_no_backend, runs_active=lambda: 0)
    with anyio.fail_after(10):
        for _ in range(3):
            assert await reader.recent_gpus(SessionData()) is CPU_ONLY
    assert len(probes) == 1


@pytest.mark.anyio
async def test_status_probes_the_gpus_again_once_the_report_is_older_than_the_age(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probes = _counted_probes(monkeypatch)
    monkeypatch.setattr(status_module, "STATUS_GPU_MAX_AGE_S", -1.0)  # every report is already too old
    reader = StatusReader(backend_for=_no_backend, runs_active=lambda: 0)
    with anyio.fail_after(10):
        await reader.recent_gpus(SessionData())
        await reader.recent_gpus(SessionData())
    assert len(probes) == 2


@pytest.mark.anyio
async def test_status_probes_again_when_the_session_moved_to_another_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    probes = _counted_probes(monkeypatch)
    reader = StatusReader(backend_for=_no_backend, runs_active=lambda: 0)
    with anyio.fail_after(10):
        await reader.recent_gpus(SessionData(backend="ollama", base_url="http://127.0.0.1:11434"))
        await reader.recent_gpus(SessionData(backend="openai", base_url="http://gpu-box:8000/v1"))
    assert probes == ["ollama http://127.0.0.1:11434", "openai http://gpu-box:8000/v1"]


@pytest.mark.anyio
async def test_an_idle_session_is_read_without_asking_its_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    _counted_probes(monkeypatch)
    reader = StatusReader(backend_for=_no_backend, runs_active=lambda: 2)
    with anyio.fail_after(10):
        status = await reader.read("idle", SessionData.from_json({"last_backend": "embedded"}))
    assert status["state"] == "idle" and status["runs_active"] == 2
