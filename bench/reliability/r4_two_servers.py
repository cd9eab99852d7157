"""R4: two `local-llm serve` processes (real MCP stdio clients) on one project database, 20 delegations in flight.

The delegations are split between the two servers (each to its own output file; the double answers with latency, so
they overlap), submitted with `wait=0`, then followed in the journal until all are finished. Every other round kills
one server with SIGKILL while its runs are in flight, and a restarted server resumes them (short form: two rounds;
full: six). Per run:

- it ends `done`, its file holds the answer;
- the journal: versions 1..n with no gap or duplicate, one `start`, one generation per attempt (no run was executed
  by both processes), exactly one line in the delegation log agreeing with it;
- the double saw one chat request per attempt (plus at most one per recovery: a run killed while generating asks
  again), so no run was generated twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from bench.reliability.common import (
    MODEL,
    REPO,
    ScenarioResult,
    answer_for,
    journal_problems,
    log_problems,
    started_double,
)
from engine.project import Project
from engine.store.db import MachineRecord, Store

__all__ = ["run"]

RUNS = 20
MARKER = re.compile(r"\[r4 run (\d+)\]")
FINISH_TIMEOUT_S = 120.0
TERMINAL = ("done", "failed", "cancelled")


def _responder(latency: Mapping[int, float]) -> Any:
    def respond(body: Mapping[str, Any]) -> str:
        match = MARKER.search(json.dumps(body.get("messages")))
        if match is None:
            return answer_for({})
        index = int(match.group(1))
        time.sleep(latency.get(index, 0.1))  # generation takes a while: runs of both servers overlap
        return answer_for({_path(index): f"answer {index}\n"})

    return respond


def _path(index: int) -> str:
    return f"r4/run{index:02d}.txt"


@asynccontextmanager
async def _server(project: Path, double_host: str) -> AsyncIterator[Client]:
    env = {**os.environ, "LOCAL_LLM_PROJECT": str(project), "OLLAMA_HOST": double_host, "PYTHONUNBUFFERED": "1"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_adapter", "serve"], env=env, cwd=str(REPO))
    async with Client(params, read_timeout_seconds=60) as client:
        yield client


async def _call(client: Client, **arguments: Any) -> dict[str, Any]:
    with anyio.fail_after(60):
        result = await client.call_tool("local_llm", arguments)
    if result.is_error:
        raise RuntimeError(f"{arguments.get('action')} failed: {result.content!r}")
    return dict(result.structured_content or {})


async def _submit(client: Client, index: int) -> str:
    view = await _call(client, action="delegate", task=f"write the file [r4 run {index}]",
                       output_files=[{"path": _path(index), "description": "one line"}],
                       verify=f"test -s {_path(index)}", max_attempts=2, wait=0)
    return str(view["run_id"])


async def _until(store: Store, run_ids: list[str], done: Any, timeout: float) -> bool:
    """Poll the journal (bounded) until `done(records)` holds."""
    with anyio.move_on_after(timeout):
        while True:
            records = [store.get(r) for r in run_ids]
            if done(records):
                return True
            await anyio.sleep(0.05)
    return False


def _owner_pid(record: MachineRecord) -> int | None:
    try:
        return int(str(record.owner).rsplit(":", 2)[1])
    except (IndexError, ValueError):
        return None


def _check(project: Path, store: Store, record: MachineRecord, index: int, chats: int) -> list[str]:
    problems = []
    if record.state != "done":
        problems.append(f"ended {record.state}: {record.data.get('error')}")
    target = project / _path(index)
    if record.state == "done" and (not target.exists() or target.read_text() != f"answer {index}\n"):
        problems.append("its file does not hold the answer")
    problems += journal_problems(store, record)
    problems += log_problems(project, record)
    attempts = int(record.data.get("attempt", 0))
    recoveries = sum(1 for e in store.events(record.id) if e.event == "recover")
    if not attempts <= chats <= attempts + recoveries:
        problems.append(f"{chats} generations requested for {attempts} attempt(s) and {recoveries} recoveries")
    return problems


def _chats_per_run(double: Any) -> dict[int, int]:
    counts: dict[int, int] = {}
    for body in double.bodies("/api/chat"):
        if isinstance(body, Mapping) and (match := MARKER.search(json.dumps(body.get("messages")))):
            counts[int(match.group(1))] = counts.get(int(match.group(1)), 0) + 1
    return counts


class _Held:
    """A server kept open by its own task (so one can be closed while the others stay open: cancel scopes must end
    in the order they began within one task)."""

    def __init__(self) -> None:
        self.stop = anyio.Event()
        self.closed = anyio.Event()

    async def serve(self, project: Path, host: str, *,
                    task_status: anyio.abc.TaskStatus[Client] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            # A killed server's connection breaks on the way out: expected.
            with contextlib.suppress(Exception):
                async with _server(project, host) as client:
                    task_status.started(client)
                    await self.stop.wait()
        finally:
            self.closed.set()


async def _round(result: ScenarioResult, rng: random.Random, *, kill: bool) -> None:
    with started_double() as double, tempfile.TemporaryDirectory(prefix="rel-r4-") as tmp:
        latency = {i: round(rng.uniform(0.1, 0.4), 2) for i in range(RUNS)}
        double.responder = _responder(latency)
        project = Path(tmp) / "project"
        project.mkdir()
        store = Store(Project.resolve(project).state_db)
        label = "round with one server killed" if kill else "round"
        servers = [_Held(), _Held(), _Held()]
        try:
            async with anyio.create_task_group() as tg:
                first = await tg.start(servers[0].serve, project, double.host)
                # Not persist: a restarted server unloads the session the killed one enabled while the other server's
                # runs are in flight, and the runs it resumes enable it again (the harder path).
                await _call(first, action="enable", llm=MODEL, backend="ollama", slots=2)
                second = await tg.start(servers[1].serve, project, double.host)
                order = list(range(RUNS))
                rng.shuffle(order)
                run_ids: dict[int, str] = {}
                for n, index in enumerate(order):
                    run_ids[index] = await _submit(first if n % 2 == 0 else second, index)
                ids = list(run_ids.values())
                if kill:
                    await _kill_first_midway(store, [run_ids[i] for n, i in enumerate(order) if n % 2 == 0],
                                             servers[0], result)
                    await tg.start(servers[2].serve, project, double.host)  # the restart resumes its runs
                finished = await _until(store, ids, lambda rs: all(r.state in TERMINAL for r in rs),
                                        FINISH_TIMEOUT_S)
                if not finished:
                    result.notes.append(f"{label}: not all runs finished within {FINISH_TIMEOUT_S}s")
                chats = _chats_per_run(double)
                for index, run_id in sorted(run_ids.items()):
                    problems = _check(project, store, store.get(run_id), index, chats.get(index, 0))
                    result.record(problems, f"{label}, run {index}")
                for server in servers:
                    server.stop.set()
        finally:
            store.close()


async def _kill_first_midway(store: Store, first_ids: list[str], first: _Held, result: ScenarioResult) -> None:
    """SIGKILL the first server once some of its runs are finished and others are not, then reap it (its stdio
    client's exit waits for the process: a zombie would still look like a live owner)."""
    await _until(store, first_ids, lambda rs: any(r.state == "done" for r in rs) and any(
        r.state not in TERMINAL and r.state != "pending" for r in rs), 30)
    in_flight = [store.get(r) for r in first_ids if store.get(r).state not in TERMINAL]
    pids = {_owner_pid(r) for r in in_flight} - {None}
    pid = next(iter(pids), None)
    if pid is None:
        result.notes.append("kill round: no run of the first server was in flight to kill it under")
    else:
        os.kill(pid, signal.SIGKILL)
        result.notes.append(f"killed the first server with {len(in_flight)} of its runs in flight")
    first.stop.set()
    with anyio.fail_after(30):
        await first.closed.wait()


def run(*, short: bool, seed: int) -> ScenarioResult:
    result = ScenarioResult("R4", f"two serve processes, {RUNS} delegations in flight")
    rng = random.Random(seed)
    started = time.monotonic()
    # Short and full alike: one plain round, one with a server killed (it is what the scenario is about, and quick);
    # the full form repeats both with other seeds and latencies.
    for kill in (False, True) * (1 if short else 3):
        anyio.run(lambda k=kill: _round(result, rng, kill=k))
    result.seconds = time.monotonic() - started
    return result
