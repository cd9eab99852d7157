"""No silent truncation on the Ollama backend, against the Ollama double (with today's and an older version).

Ollama cannot be installed where these tests run, so the double imitates it from its source
(engine/testing/ollama_double/behaviour.py names each rule's file and commit): `truncate` and `shift` default to
true, so an overlong prompt is cut with only a server log line; `truncate: false` makes it a 400 (from v0.12.6);
`prompt_eval_count` counts after the cut and without the cached prefix; the default num_ctx depends on the VRAM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from engine.executor.backends.base import ChatMessage, GenerateRequest, PromptTooLong
from engine.executor.backends.ollama import OllamaBackend, chat_body
from engine.executor.backends.ollama_features import ServerFeatures, is_context_overflow, parse_version
from engine.testing.ollama_double import FakeModel, OllamaDouble
from engine.testing.ollama_double.behaviour import GIB, default_num_ctx

pytestmark = pytest.mark.anyio

MODEL = FakeModel("qwen2.5-coder:7b", family="qwen2", context_length=32768, capabilities=("completion", "tools"))


@pytest.fixture
async def current() -> AsyncIterator[OllamaDouble]:
    with OllamaDouble(models=[MODEL]) as d:
        yield d


def _request(text: str, *, num_ctx: int = 256, max_tokens: int = 64) -> GenerateRequest:
    return GenerateRequest(model=MODEL.name, messages=[ChatMessage("system", "be brief"), ChatMessage("user", text)],
                           num_ctx=num_ctx, max_tokens=max_tokens)


async def _raw_chat(double: OllamaDouble, body: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=double.url) as client:
        return await client.post("/api/chat", json={"model": MODEL.name, "stream": False, **body})


def test_every_chat_turns_off_truncation_and_context_shift() -> None:
    body = chat_body(_request("x"))
    assert body["truncate"] is False and body["shift"] is False


async def test_left_to_its_defaults_ollama_cuts_an_overlong_prompt_and_its_count_cannot_show_it(
    current: OllamaDouble,
) -> None:
    long = "word " * 400  # 2000 characters: 500 tokens in the double's tokenizer, num_ctx 256
    answer = await _raw_chat(current, {"messages": [{"role": "user", "content": long}],
                                       "options": {"num_ctx": 256}})
    assert answer.status_code == 200
    assert answer.json()["prompt_eval_count"] < 256  # after the cut: nothing in the answer says one happened
    assert current.truncations == [(MODEL.name, 504, 128)]


async def test_an_overlong_prompt_is_an_error_with_numbers_instead_of_a_silent_cut(current: OllamaDouble) -> None:
    backend = OllamaBackend(current.url)
    try:
        with anyio.fail_after(10), pytest.raises(PromptTooLong) as caught:
            await backend.generate(_request("word " * 400))
    finally:
        await backend.aclose()
    error = caught.value
    assert not error.retryable and error.refused_by == "server" and not error.exact
    assert error.num_ctx == 256 and error.prompt_tokens is not None and error.prompt_tokens > 256
    assert "the input length exceeds the context length" in str(error) and "num_ctx 256" in str(error)
    assert current.truncations == []


async def test_a_server_older_than_0_12_6_is_not_trusted_to_refuse() -> None:
    with OllamaDouble(models=[MODEL], version="0.12.5") as old:
        backend = OllamaBackend(old.url)
        try:
            count = await backend.count_prompt(_request("word " * 400))
            with anyio.fail_after(10):
                await backend.generate(_request("word " * 400))  # the fields are ignored: cut, no error
        finally:
            await backend.aclose()
        assert old.truncations and old.truncations[0][1] > 256
    assert not count.server_refuses_overflow and not count.exact
    assert count.unguarded is not None and "0.12.5" in count.unguarded and "0.12.6" in count.unguarded


async def test_todays_server_is_trusted_to_refuse(current: OllamaDouble) -> None:
    backend = OllamaBackend(current.url)
    try:
        count = await backend.count_prompt(_request("x"))
    finally:
        await backend.aclose()
    assert count.server_refuses_overflow and count.unguarded is None


async def test_prompt_eval_count_leaves_out_the_prefix_reused_from_the_cache(current: OllamaDouble) -> None:
    first = [{"role": "system", "content": "rules " * 50}, {"role": "user", "content": "task " * 50}]
    a = (await _raw_chat(current, {"messages": first, "options": {"num_ctx": 4096}})).json()
    b = (await _raw_chat(current, {"messages": first, "options": {"num_ctx": 4096}})).json()
    retry = [*first, {"role": "assistant", "content": "bad"}, {"role": "user", "content": "fix it"}]
    c = (await _raw_chat(current, {"messages": retry, "options": {"num_ctx": 4096}})).json()
    assert a["prompt_eval_count"] == 8 + 75 + 63  # two messages: markers plus 300 and 250 characters
    assert b["prompt_eval_count"] == 1  # all cached but the last token
    assert c["prompt_eval_count"] == 8 + 1 + 2  # only the new turns


async def test_with_shift_off_generation_stops_where_the_context_is_full(current: OllamaDouble) -> None:
    current.reply("token " * 100)
    body = {"messages": [{"role": "user", "content": "x" * 400}], "options": {"num_ctx": 128}, "shift": False}
    answer = (await _raw_chat(current, body)).json()
    assert answer["done_reason"] == "length" and answer["eval_count"] == 128 - 104


@pytest.mark.parametrize(
    ("version", "vram", "env", "expected"),
    [
        ("0.6.6", None, None, 2048),
        ("0.6.7", 80 * GIB, None, 4096),
        ("0.15.4", 80 * GIB, None, 4096),
        ("0.15.5", 16 * GIB, None, 4096),
        ("0.15.5", 24 * GIB, None, 32768),
        ("0.33.0", 47 * GIB, None, 262144),
        ("0.33.0", 80 * GIB, 8192, 8192),
    ],
)
def test_the_default_context_follows_the_version_the_vram_and_the_environment(
    version: str, vram: int | None, env: int | None, expected: int,
) -> None:
    assert default_num_ctx(version, vram_bytes=vram, context_length_env=env) == expected


async def test_a_load_without_num_ctx_gets_the_vram_dependent_default() -> None:
    with OllamaDouble(models=[MODEL], vram_bytes=24 * GIB) as double:
        async with httpx.AsyncClient(base_url=double.url) as client:
            await client.post("/api/generate", json={"model": MODEL.name})
            shown = (await client.get("/api/ps")).json()
    assert shown["models"][0]["context_length"] == 32768


async def test_capabilities_appear_from_0_6_4_on() -> None:
    for version, present in (("0.6.3", False), ("0.6.4", True)):
        with OllamaDouble(models=[MODEL], version=version) as double:
            async with httpx.AsyncClient(base_url=double.url) as client:
                shown = (await client.post("/api/show", json={"model": MODEL.name})).json()
        assert ("capabilities" in shown) is present


@pytest.mark.parametrize(
    ("version", "truncate", "think"),
    [("0.12.6", True, True), ("0.12.5", False, True), ("0.9.0", False, True), ("0.8.9", False, False),
     ("0.33.0-rc2", True, True), ("0.0.0", False, False), ("garbage", False, False)],
)
def test_what_a_server_honours_follows_its_version(version: str, truncate: bool, think: bool) -> None:
    features = ServerFeatures(version)
    assert features.honours_truncate is truncate and features.honours_think is think
    assert (features.truncation_note() is None) is truncate
    assert parse_version("0.0.0") is None


@pytest.mark.parametrize(
    ("message", "overflow"),
    [
        ("the input length exceeds the context length", True),
        ('{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it"}}', True),
        ("the prompt is longer than the context length currently available to the model", True),
        ('"qwen3" does not support thinking', False),
        ("model requires more system memory", False),
    ],
)
def test_ollamas_overflow_answers_are_recognised(message: str, overflow: bool) -> None:
    assert is_context_overflow(message) is overflow
