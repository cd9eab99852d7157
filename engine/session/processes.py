"""Server processes the session starts and stops: `ollama serve` spawned detached, found by pid, stopped on request."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import anyio
import psutil

from engine.executor.backends.ollama import OllamaBackend
from engine.process_identity import proc_stat
from engine.progress import Progress

__all__ = ["alive", "ollama_serve_pids", "spawn_detached", "stop_ollama_server"]

_spawned: list[subprocess.Popen[bytes]] = []
"""Servers this process started: not ours to wait for (they outlive us), kept so Popen's destructor stays quiet."""


def spawn_detached(argv: list[str], log_path: Path) -> int:
    """Start a server that outlives this process: its own session (no SIGHUP/SIGINT from our terminal), no stdin,
    stdout discarded, stderr appended to `log_path`."""
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_file,
            start_new_session=True, close_fds=True,
        )
    _spawned.append(proc)
    return proc.pid


def alive(pid: int) -> bool:
    for proc in _spawned:
        if proc.pid == pid:
            return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = proc_stat(pid)
    return stat is None or not stat.zombie  # a zombie has exited; it only waits for its new parent to reap it


def ollama_serve_pids() -> list[int]:
    """`ollama serve` processes of this user (for --stop-server when this tool did not start the server), through
    psutil: the same on Linux and macOS, where there is no /proc to scan."""
    me = psutil.Process().username()
    pids = []
    for proc in psutil.process_iter(["username", "cmdline"]):
        if proc.info["username"] != me:
            continue
        argv: list[str] = proc.info["cmdline"] or []  # None where access is denied; [] for kernel threads, zombies
        names = [Path(a).name for a in argv[:3]]
        if "serve" in names and "ollama" in names:
            pids.append(proc.pid)
    return pids


async def stop_ollama_server(*, base_url: str, recorded_pid: int | None, progress: Progress) -> str:
    """Stop `ollama serve` (the one enable started, else this user's); says what happened. Not finding one is not a
    failure of the session: the model is already unloaded."""
    pids = [recorded_pid] if recorded_pid and alive(recorded_pid) else ollama_serve_pids()
    if not pids:
        return (f"not stopped: no `ollama serve` process of this user found (Ollama at {base_url} may run as a "
                "service: stop it with `systemctl stop ollama`)")
    await progress(0, None, f"stopping ollama serve (pid {', '.join(map(str, pids))})")
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    probe = OllamaBackend(base_url)
    try:
        with anyio.move_on_after(10):
            while await probe.version() is not None or any(alive(p) for p in pids):
                await anyio.sleep(0.05)
    finally:
        await probe.aclose()
    still = [p for p in pids if alive(p)]
    if still:
        return f"asked to stop (SIGTERM) but still running after 10 s: pid {', '.join(map(str, still))}"
    return f"stopped (pid {', '.join(map(str, pids))})"
