"""What every benchmark shares: the `Figure` row, timing statistics, scratch projects and subprocess helpers."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SCRIPTED_ANSWER_FORM = "json"
"""The benchmarks' scripted backends and the Ollama double answer whole files; B7 chooses its forms per call."""

__all__ = [
    "PYTHON",
    "REPO",
    "SCRIPTED_ANSWER_FORM",
    "Figure",
    "free_port",
    "median",
    "percentile",
    "ratio",
    "scratch_dir",
    "serve_env",
    "stdio_client",
    "wait_http",
]

REPO = Path(__file__).resolve().parents[1]
UNREACHABLE_OLLAMA = "127.0.0.1:9"
"""The discard port: nothing answers, so a server started for a benchmark never finds (or starts) an Ollama."""


@dataclass
class Figure:
    """One row of the table. `target` is the largest acceptable ratio engine/baseline (smaller is better)."""

    id: str
    figure: str
    engine: float
    baseline: float
    unit: str
    target: float
    extra_ok: bool = True
    """A second condition some targets carry (B3: the overhead must also stay under 50 ms)."""
    target_text: str = ""
    note: str = ""

    @property
    def ratio(self) -> float:
        return ratio(self.engine, self.baseline)

    @property
    def passed(self) -> bool:
        return self.ratio <= self.target and self.extra_ok

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "passed": self.passed,
                "target_text": self.target_text or f"<= {self.target:g} x"}


def ratio(engine: float, baseline: float) -> float:
    return engine / baseline if baseline > 0 else float("inf")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank: with few samples p99 is the slowest one, as it should be."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory on the disk the benchmarks compare (both sides use the same one)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as name:
        yield Path(name)


def serve_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment of a `local-llm serve` (or bare server) subprocess: no Ollama, no GPU probe surprises."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(project)),
        "LOCAL_LLM_PROJECT": str(project),
        "OLLAMA_HOST": UNREACHABLE_OLLAMA,
        "PYTHONPATH": str(REPO),
        "LOCAL_LLM_ANSWER_FORM": os.environ.get("LOCAL_LLM_ANSWER_FORM", "json"),
    }
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, *, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before answering at {url}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"nothing answered at {url} within {timeout_s} s")


PYTHON = sys.executable


def stdio_client(params: Any, *, read_timeout_s: float = 60.0) -> Any:
    """An SDK `Client` over stdio whose server's stderr goes to /dev/null: its log lines must not mix into the
    table (and a full stderr pipe must not stall it)."""
    from mcp import Client
    from mcp.client.stdio import stdio_client as transport

    return Client(transport(params, errlog=_devnull()), read_timeout_seconds=read_timeout_s)


_DEVNULL: list[Any] = []


def _devnull() -> Any:
    if not _DEVNULL:
        _DEVNULL.append(open(os.devnull, "w"))  # noqa: SIM115 - kept open for the process's life
    return _DEVNULL[0]
