"""mcp_adapter/long_calls.py in-process (`Client(build_server(engine))`, a ScriptedBackend held by an event): the
client named by `initialize` (the handshake era) as well as by a 2026-07-28 request's `_meta`, the progress period's
setting, the heartbeat's text. The same behaviour over stdio is in test_server_long_calls.py."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import Implementation

from engine import Engine, InvalidArgument
from engine.testing.scripted import ScriptedBackend, use_backend
from mcp_adapter import answer_policy
from mcp_adapter.long_calls import PROGRESS_ENV, PROGRESS_PERIOD_S, progress_period, status_line
from mcp_adapter.server import build_server

pytestmark = pytest.mark.answer_form_json  # the double scripts whole-file JSON answers

DEADLINE_S = 30.0
CLAUDE_CODE = Implementation(name="claude-code", version="2.1.332")


async def _held_delegate(engine: Engine, *, mode: str, info: Implementation | None, release_on_beats: bool
                         ) -> tuple[dict[str, Any], int]:
    """A delegate whose generation waits for an event, set once the call answered (or, with `release_on_beats`,
    once 3 heartbeats came). Returns the answer and the heartbeats seen before it."""
    backend = ScriptedBackend(block=anyio.Event())
    use_backend(engine, backend)
    beats = 0
    answer: dict[str, Any] = {}

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        nonlocal beats
        if message and message.startswith("delegating, attempt 1 of 3"):
            beats += 1
            if release_on_beats and beats >= 3 and backend.block is not None:
                backend.block.set()

    async def call(client: Client) -> None:
        result = await client.call_tool("local_llm", {"action": "delegate", "task": "x", "output_files": ["a.txt"]},
                                        progress_callback=on_progress)
        assert result.structured_content is not None
        answer.update(result.structured_content)
        if backend.block is not None:
            backend.block.set()

    with anyio.fail_after(DEADLINE_S):
        async with engine.background(), Client(build_server(engine), mode=mode, client_info=info) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, client)
            if answer["state"] not in ("done", "failed", "cancelled"):
                await client.call_tool("local_llm", {"action": "result", "run_id": answer["run_id"], "wait": 30})
    return answer, beats


@pytest.mark.anyio
async def test_claude_code_named_by_initialize_also_gets_its_answer_when_the_run_ends(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "0.02")
    monkeypatch.setattr(answer_policy, "BOUNDED_WAIT_S", 0.2)  # what another client would get
    answer, beats = await _held_delegate(engine, mode="legacy", info=CLAUDE_CODE, release_on_beats=True)
    assert answer["state"] == "done" and beats >= 3


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_client_not_in_the_table_gets_the_run_id_after_the_bounded_wait(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv(PROGRESS_ENV, "0.02")
    monkeypatch.setattr(answer_policy, "BOUNDED_WAIT_S", 0.2)
    answer, _ = await _held_delegate(engine, mode=mode, info=Implementation(name="other", version="9"),
                                     release_on_beats=False)
    assert answer["state"] == "delegating" and answer["run_id"]


def test_the_progress_period_is_read_from_its_variable_with_a_clear_error() -> None:
    assert progress_period({}) == PROGRESS_PERIOD_S == 5.0
    assert progress_period({PROGRESS_ENV: " 0.5 "}) == 0.5
    for bad in ("0", "-1", "soon", "nan", "3601"):
        with pytest.raises(InvalidArgument, match=PROGRESS_ENV):
            progress_period({PROGRESS_ENV: bad})


def test_a_heartbeat_says_state_attempt_and_tokens_of_a_run_and_k_of_n_of_a_batch() -> None:
    run = {"run_id": "run-1", "state": "verifying", "attempts": 2, "max_attempts": 3, "tokens_generated": 412}
    assert status_line(run) == "verifying, attempt 2 of 3, 412 tokens generated"
    batch = {"batch_id": "batch-1", "state": "running", "total": 10, "tokens_generated": 90,
             "counts": {"done": 3, "failed": 1, "delegating": 2, "pending": 4}}
    assert status_line(batch) == "4 of 10 done; batch running, 90 tokens generated"
