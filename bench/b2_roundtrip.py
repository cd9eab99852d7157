"""B2: MCP round trip of `status` and `analyze` through `local-llm serve` vs the bare echo server, over real stdio.

Both servers run as subprocesses at the same time, each behind the SDK's stdio client; after a warm-up the calls
are interleaved (status, analyze, echo, status, ...) so a noisy moment of the machine hits all three alike.
`status` reads the session row (SQLite) and probes the GPUs; `analyze` scores the task and appends a line to the
delegation log (and reads the log back for its history signal).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from bench.common import PYTHON, REPO, Figure, percentile, scratch_dir, serve_env, stdio_client

__all__ = ["bare_params", "run", "serve_params"]

TARGET = 1.3
ANALYZE_ARGS = {"action": "analyze", "task": "add docstrings to every public function in util.py",
                "output_files": ["util.py"], "task_type": "docs"}


def serve_params(project: Path) -> Any:
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=PYTHON, args=["-m", "mcp_adapter", "serve"], env=serve_env(project),
                                 cwd=str(REPO))


def bare_params(project: Path) -> Any:
    from mcp.client.stdio import StdioServerParameters

    return StdioServerParameters(command=PYTHON, args=["-m", "bench.bare_server"], env=serve_env(project),
                                 cwd=str(REPO))


@asynccontextmanager
async def clients(project: Path) -> AsyncIterator[tuple[Any, Any]]:
    async with AsyncExitStack() as stack:
        serve = await stack.enter_async_context(stdio_client(serve_params(project)))
        bare = await stack.enter_async_context(stdio_client(bare_params(project)))
        yield serve, bare


async def _timed(client: Any, name: str, args: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = await client.call_tool(name, args)
    elapsed = time.perf_counter() - started
    if result.is_error:
        raise RuntimeError(f"{name} {args.get('action')} failed: {result.content}")
    return elapsed


async def measure(project: Path, n: int, warmup: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"status": [], "analyze": [], "echo": []}
    async with clients(project) as (serve, bare):
        calls = (("status", serve, "local_llm", {"action": "status"}),
                 ("analyze", serve, "local_llm", ANALYZE_ARGS),
                 ("echo", bare, "echo", {"action": "status"}))
        for i in range(warmup + n):
            for label, client, name, args in calls:
                elapsed = await _timed(client, name, args)
                if i >= warmup:
                    samples[label].append(elapsed)
    return samples


def run(quick: bool) -> list[Figure]:
    n, warmup = (60, 10) if quick else (400, 30)
    with scratch_dir("b2") as project:
        (project / "util.py").write_text("def f(x):\n    return x + 1\n")
        samples = anyio.run(measure, project, n, warmup)
    figures = []
    for action in ("status", "analyze"):
        for q in (50, 99):
            figures.append(Figure(
                "B2", f"MCP `{action}` round trip p{q} ({n} calls)",
                engine=percentile(samples[action], q) * 1e3, baseline=percentile(samples["echo"], q) * 1e3,
                unit="ms", target=TARGET, note=f"bare echo p{q}",
            ))
    return figures
