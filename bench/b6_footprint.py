"""B6: idle memory (RSS) and start cost of `local-llm serve` vs the bare MCPServer echo server.

Both are spawned behind the SDK's stdio client; once each has answered `initialize` and `tools/list`, its VmRSS is read
from /proc/PID/status (the PID is found among this process's children). Import time: wall time of a fresh
interpreter importing what each server imports (`serve`'s path through `mcp_adapter.entry` vs `bench.bare_server`),
median of several; time to first answer: spawn -> `tools/list` answered.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import PYTHON, REPO, Figure, median, scratch_dir, serve_env, stdio_client

__all__ = ["children", "rss_kib", "run"]

TARGET = 1.5
SERVE_IMPORTS = (
    "from mcp_adapter.entry import HIDDEN_FROM_SERVE, _hidden\n"
    "with _hidden(HIDDEN_FROM_SERVE):\n"
    "    import mcp_adapter.cli.serve, mcp_adapter.server"
)
"""What `local-llm serve` imports: its entry routes it past the CLI library, with rich hidden (mcp_adapter/entry.py)."""
BARE_IMPORTS = "import bench.bare_server"


def children(parent: int) -> dict[int, str]:
    """PID -> command line of the live child processes of `parent` (from /proc)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == parent:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


async def first_answer_and_rss(params: Any, marker: str) -> tuple[float, int]:
    started = time.perf_counter()
    async with stdio_client(params) as client:
        await client.list_tools()
        elapsed = time.perf_counter() - started
        await anyio.sleep(0.3)  # idle: let start-up work in the background (recovery scan) finish
        pids = [pid for pid, cmd in children(os.getpid()).items() if marker in cmd]
        if len(pids) != 1:
            raise RuntimeError(f"expected one child running {marker!r}, found {pids}")
        return elapsed, rss_kib(pids[0])


def import_seconds(statement: str) -> float:
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", statement], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started


def run(quick: bool) -> list[Figure]:
    from mcp.client.stdio import StdioServerParameters

    rounds, imports = (2, 3) if quick else (5, 7)
    serve_first: list[float] = []
    bare_first: list[float] = []
    serve_rss: list[int] = []
    bare_rss: list[int] = []
    with scratch_dir("b6") as project:
        serve = StdioServerParameters(command=PYTHON, args=["-m", "mcp_adapter", "serve"], env=serve_env(project),
                                      cwd=str(REPO))
        bare = StdioServerParameters(command=PYTHON, args=["-m", "bench.bare_server"], env=serve_env(project),
                                     cwd=str(REPO))
        for _ in range(rounds):
            s, r = anyio.run(first_answer_and_rss, serve, "mcp_adapter")
            serve_first.append(s)
            serve_rss.append(r)
            s, r = anyio.run(first_answer_and_rss, bare, "bench.bare_server")
            bare_first.append(s)
            bare_rss.append(r)
    serve_imp = [import_seconds(SERVE_IMPORTS) for _ in range(imports)]
    bare_imp = [import_seconds(BARE_IMPORTS) for _ in range(imports)]
    return [
        Figure("B6", f"idle RSS after the first answer (median of {rounds})", engine=median(serve_rss) / 1024,
               baseline=median(bare_rss) / 1024, unit="MiB", target=TARGET),
        Figure("B6", f"interpreter start + imports (median of {imports})", engine=median(serve_imp) * 1e3,
               baseline=median(bare_imp) * 1e3, unit="ms", target=TARGET,
               note=f"{SERVE_IMPORTS!r} vs {BARE_IMPORTS!r}"),
        Figure("B6", f"spawn -> tools/list answered (median of {rounds})", engine=median(serve_first) * 1e3,
               baseline=median(bare_first) * 1e3, unit="ms", target=TARGET),
    ]
