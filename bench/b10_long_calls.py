"""B10: what a long delegation costs the orchestrator: model-visible tool calls and the tokens of their results, for
one delegation whose generation takes 3 minutes (issue 18, point 5; target: one call and one result).

The real MCP server in-process (`mcp.Client(build_server(engine))`, protocol 2026-07-28 with clientInfo in each
request's `_meta`), a scripted backend whose generation takes `GENERATION_S`, and the orchestrator's side played by
a loop that calls as the model would:

- **today's client behaviour** (any client not in the table, e.g. an older Claude Code): `delegate` answers after the
  bounded wait (40 s) with the run's id, then `result` (same bounded wait) until the run has ended;
- **Claude Code** (clientInfo `claude-code` 2.1.332): its default, one `delegate` answered when the run ends;
- **a tasks client** (`tasks_client` below, left to fill once the tasks extension lands): `delegate` answered with a
  task, then `tasks/get` polls that the client makes, not the model: model-visible, one call and one result.

Time is scaled: the generation takes `GENERATION_S * scale` and the bounded wait `BOUNDED_WAIT_S * scale`, so the
number of polls is the one a real 3-minute generation needs (180 / 40: the fifth answer is the first after the end),
whatever the scale; `--quick` uses 0.02 (3.6 s), the full run 0.1 (18 s). Tokens as in B8: `ceil(characters / 4)`
of each result's compact JSON.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from bench.b8_result_size import json_tokens
from bench.common import Figure, scratch_dir

__all__ = ["GENERATION_S", "Scenario", "run", "scenario", "tasks_client"]

GENERATION_S = 180.0
QUICK_SCALE = 0.02
FULL_SCALE = 0.1
TASK = "Write unit tests for the refund helpers in src/refunds.py"
OUTPUT = {"path": "tests/test_refunds.py", "description": "tests for the partial-refund and zero-amount cases"}
ENDED = ("done", "failed", "cancelled")


@dataclass
class Scenario:
    """What the model saw: one entry per tool call it made, the result's tokens."""

    name: str
    results: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def calls(self) -> int:
        return len(self.results)

    @property
    def tokens(self) -> int:
        return sum(json_tokens(r) for r in self.results)

    @property
    def final_state(self) -> str:
        return str(self.results[-1]["state"]) if self.results else "none"


@contextmanager
def _bounded_wait(seconds: float) -> Iterator[None]:
    """The other clients' bounded wait, scaled with the generation (set and restored around one scenario)."""
    from mcp_adapter import answer_policy

    before, env = answer_policy.BOUNDED_WAIT_S, os.environ.pop(answer_policy.WAIT_ENV, None)
    answer_policy.BOUNDED_WAIT_S = seconds
    try:
        yield
    finally:
        answer_policy.BOUNDED_WAIT_S = before
        if env is not None:
            os.environ[answer_policy.WAIT_ENV] = env


async def scenario(project: Path, *, name: str, client_name: str, client_version: str, scale: float) -> Scenario:
    """One delegation as a client named `client_name` makes it, the model calling `result` until the run ended."""
    from mcp import Client
    from mcp.types import Implementation

    from engine import Engine, Project
    from engine.testing.scripted import ScriptedBackend, use_backend
    from mcp_adapter.answer_policy import BOUNDED_WAIT_S
    from mcp_adapter.server import build_server

    project.mkdir()
    engine = Engine(Project.resolve(project))
    use_backend(engine, ScriptedBackend(latency=GENERATION_S * scale))
    seen = Scenario(name)
    started = anyio.current_time()
    with _bounded_wait(BOUNDED_WAIT_S * scale):
        info = Implementation(name=client_name, version=client_version)
        async with engine.background(), Client(build_server(engine), client_info=info) as client:
            call: dict[str, Any] = {"action": "delegate", "task": TASK, "output_files": [OUTPUT], "verify": "true",
                                    "answer_form": "json"}
            while True:
                answer = await client.call_tool("local_llm", call)
                assert answer.structured_content is not None, answer.content
                seen.results.append(answer.structured_content)
                if answer.structured_content["state"] in ENDED:
                    break
                call = {"action": "result", "run_id": answer.structured_content["run_id"]}
    engine.close()
    seen.wall_s = anyio.current_time() - started
    return seen


async def tasks_client(project: Path, *, scale: float) -> Scenario | None:
    """TO FILL once the tasks extension (issue 18 point 2) lands: a client declaring `io.modelcontextprotocol/tasks`
    calls `delegate` once (model-visible: the task it gets back), then polls `tasks/get` itself (not model-visible)
    until the task is `completed`; the model sees the inlined CallToolResult once. Return a Scenario whose `results`
    hold what the model saw (the task answer, the final result). None: not measured yet, no row."""
    return None


async def _measure(root: Path, scale: float) -> tuple[Scenario, Scenario, Scenario | None]:
    today = await scenario(root / "today", name="today", client_name="some-client", client_version="1.0",
                           scale=scale)
    claude = await scenario(root / "claude", name="claude-code", client_name="claude-code", client_version="2.1.332",
                            scale=scale)
    tasks = await tasks_client(root / "tasks", scale=scale)
    return today, claude, tasks


def _figures(base: Scenario, other: Scenario, label: str, scale: float) -> list[Figure]:
    assert base.final_state == other.final_state == "done", (base.final_state, other.final_state)
    note = (f"{label}: {other.calls} call(s), {other.tokens} tokens; today: {base.calls} calls "
            f"(1 delegate + {base.calls - 1} result), {base.tokens} tokens; generation {GENERATION_S * scale:g} s "
            f"= 3 min x {scale:g}")
    return [
        Figure("B10", f"model-visible tool calls, 3-min delegation: {label} vs today", other.calls, base.calls,
               "calls", 1.0, extra_ok=other.calls == 1, target_text="one call", note=note),
        Figure("B10", f"result tokens the model reads: {label} vs today", other.tokens, base.tokens, "tokens", 1.0,
               extra_ok=len(other.results) == 1, target_text="one result, <= 1.0 x"),
    ]


def run(quick: bool) -> list[Figure]:
    scale = QUICK_SCALE if quick else FULL_SCALE
    with scratch_dir("b10") as root:
        today, claude, tasks = anyio.run(_measure, root, scale)
    figures = _figures(today, claude, "Claude Code default", scale)
    if tasks is not None:
        figures += _figures(today, tasks, "tasks client", scale)
    return figures
