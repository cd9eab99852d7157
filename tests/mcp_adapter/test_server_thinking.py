"""`think` and `prompt_overflow` over MCP, through the SDK's in-process client: the field reaches the backend, a bad
value is refused by the schema, and what the orchestrator must know is a structured field of the result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client

from engine import Engine
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from mcp_adapter.server import build_server

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _client(engine: Engine) -> AsyncIterator[Client]:
    async with engine.background(), Client(build_server(engine)) as client:
        yield client


async def _call(client: Client, **arguments: Any) -> Any:
    with anyio.fail_after(30):
        return await client.call_tool("local_llm", arguments)


@pytest.mark.answer_form_json
async def test_think_reaches_the_model_and_defaults_to_off(engine: Engine) -> None:
    backend = ScriptedBackend().reply(files_answer({"a.py": "x = 1\n"}), files_answer({"b.py": "y = 2\n"}))
    use_backend(engine, backend)
    async with _client(engine) as client:
        quiet = await _call(client, action="delegate", task="a", output_files=["a.py"])
        asked = await _call(client, action="delegate", task="b", output_files=["b.py"], think="high")
        bad = await _call(client, action="delegate", task="c", output_files=["c.py"], think="extreme")
    assert [r.think for r in backend.requests] == [False, "high"]
    assert quiet.structured_content["thinking_tokens"] == 0 and asked.structured_content["state"] == "done"
    assert bad.is_error and "think" in bad.content[0].text  # type: ignore[union-attr]


async def test_a_prompt_that_does_not_fit_is_a_structured_field_of_the_result(engine: Engine) -> None:
    use_backend(engine, ScriptedBackend(prompt_exact=True, prompt_padding=9000), num_ctx=4096)
    async with _client(engine) as client:
        result = await _call(client, action="delegate", task="a", output_files=["a.py"])
    content = result.structured_content
    assert content["state"] == "failed"
    assert content["prompt_overflow"]["num_ctx"] == 4096 and content["prompt_overflow"]["refused_by"] == "tokenizer"
