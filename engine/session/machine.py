"""Whose memory the advice follows: this machine's GPUs, or, when OLLAMA_HOST names another machine, what that
server reports about itself.

A remote server's hardware is not in Ollama's API (`/api/experimental/model-recommendations` returns a model list,
not the server's memory). What is: each loaded model's `size_vram` and `context_length` in `/api/ps` (ollama/ollama
api/types.go `ProcessModelResponse`). Their sum is a lower bound of the server's VRAM and is used as such; with no
model loaded the server's memory is unknown and no tier is chosen by memory.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from urllib.parse import urlsplit

import anyio.to_thread

from engine.executor.backends.base import BackendError
from engine.executor.backends.ollama import OllamaBackend
from engine.session import gpu
from engine.session.memory import GB, GpuReport, Probe

__all__ = ["is_remote", "machine_report", "server_report"]


def _is_own_address(address: str) -> bool:
    """This machine has the address when a socket can bind to it (EADDRNOTAVAIL otherwise)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
        return True
    except OSError as exc:
        return exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT)


def is_remote(base_url: str) -> tuple[bool, str]:
    """Whether the server at `base_url` is another machine, and why (the addresses its host resolves to)."""
    host = urlsplit(base_url).hostname or "127.0.0.1"
    try:
        addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
    except OSError as exc:
        return True, f"{host} does not resolve here ({exc})"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if ip.is_loopback or ip.is_unspecified or _is_own_address(address):
            return False, f"{host} is this machine ({address})"
    return True, f"{host} resolves to {', '.join(addresses)}, not an address of this machine"


async def server_report(base_url: str, why: str) -> GpuReport:
    """The remote server's memory as far as `/api/ps` shows it; the local probes are not run."""
    local = Probe("local", f"not used: the Ollama server is another machine ({why})")
    backend = OllamaBackend(base_url)
    try:
        loaded = await backend.loaded()
    except BackendError as exc:
        return GpuReport(remote=True, probes=(local, Probe("server", f"{base_url} did not answer /api/ps ({exc})")),
                         basis="unknown: the server did not answer")
    finally:
        await backend.aclose()
    on_gpu = sum(int(m.size_vram or 0) for m in loaded)
    contexts = [int(m.context_length) for m in loaded if m.context_length]
    if not on_gpu:
        what = "no model loaded" if not loaded else "its loaded models are on its CPU"
        return GpuReport(remote=True, probes=(local, Probe("server", f"{base_url}: {what}")),
                         basis=f"unknown: {what} (/api/ps), so no tier is chosen by memory")
    names = ", ".join(m.name for m in loaded)
    basis = (f"at least {on_gpu / GB:.1f} GB: what the server's loaded models ({names}) hold on its GPU "
             "(/api/ps size_vram)")
    return GpuReport(remote=True, probes=(local, Probe("server", basis)), basis=basis, server_bytes=on_gpu,
                     server_context=max(contexts, default=None))


async def machine_report(base_url: str) -> GpuReport:
    """The server's figures when OLLAMA_HOST is another machine, else this machine's probes."""
    remote, why = await anyio.to_thread.run_sync(is_remote, base_url)
    if remote:
        return await server_report(base_url, why)
    return await anyio.to_thread.run_sync(gpu.probe_gpus)
