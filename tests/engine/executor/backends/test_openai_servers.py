"""The OpenAI-compatible backend against the servers it meets, played by engine/testing/openai_double.py (each
behaviour there cites the server's source): what each says about itself, which response_format form it gets first,
and the fall-back between the two forms."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from engine.executor.backends import make_backend
from engine.executor.backends.base import BackendError, ChatMessage, GenerateRequest, PromptTooLong
from engine.executor.backends.openai import OpenAIBackend
from engine.executor.backends.openai_server import GroupFacts
from engine.testing.openai_double import OpenAIDouble

SCHEMA = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}


def ask(model: str, *, schema: dict[str, object] | None = SCHEMA) -> GenerateRequest:
    return GenerateRequest(model=model, messages=[ChatMessage("user", "write x = 1")], schema=schema, max_tokens=64)


@asynccontextmanager
async def serving(kind: str = "llama.cpp", **options: Any) -> AsyncIterator[tuple[OpenAIDouble, OpenAIBackend]]:
    """A started double of `kind` and a backend pointed at it, for at most 10 s."""
    with OpenAIDouble(kind, **options) as double:
        backend = OpenAIBackend(double.url)
        try:
            with anyio.fail_after(10):
                yield double, backend
        finally:
            await backend.aclose()


@pytest.mark.anyio
async def test_vllms_max_model_len_is_the_models_context() -> None:
    async with serving("vllm", max_model_len=12288) as (double, backend):
        assert await backend.context_length(double.model) == 12288
        facts = await backend.facts()
    assert (facts.kind, facts.slot_context, facts.total_slots) == ("vllm", 12288, None)


@pytest.mark.anyio
async def test_llama_cpp_says_its_slots_and_what_one_slot_holds() -> None:
    async with serving("llama.cpp", n_ctx=8192, total_slots=4, n_ctx_train=32768) as (double, backend):
        facts = await backend.facts()
        trained = await backend.context_length(double.model)
    # -c 8192 -np 4: each slot holds 2048 (src/llama-context.cpp), and /props already says so.
    assert (facts.kind, facts.total_slots, facts.slot_context, trained) == ("llama.cpp", 4, 2048, 32768)


@pytest.mark.anyio
async def test_a_unified_llama_cpp_cache_lets_one_slot_use_the_whole_context() -> None:
    async with serving("llama.cpp", n_ctx=8192, total_slots=4, kv_unified=True) as (_, backend):
        facts = await backend.facts()
    assert (facts.total_slots, facts.slot_context) == (4, 8192)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["llama.cpp", "vllm", "ollama", "lmstudio"])
async def test_servers_that_take_json_schema_get_it_first_and_keep_getting_it(kind: str) -> None:
    async with serving(kind) as (double, backend):
        first = await backend.generate(ask(double.model))
        await backend.generate(ask(double.model))
    assert double.response_formats() == ["json_schema", "json_schema"]
    sent = double.bodies("/v1/chat/completions")[0]["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    assert double.constrained == [SCHEMA, SCHEMA] and json.loads(first.text) == {"code": ""}


def test_vllm_would_not_enforce_a_schema_sent_as_json_object() -> None:
    # Why vLLM must get json_schema: its json_object only asks for some JSON (the schema field is ignored).
    vllm = OpenAIDouble("vllm")
    assert vllm.enforced({"type": "json_object", "schema": SCHEMA}) == "json"
    assert vllm.enforced({"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}) == SCHEMA


@pytest.mark.anyio
async def test_llama_cpp_pythons_server_gets_json_object_first() -> None:
    async with serving("llama-cpp-python") as (double, backend):
        result = await backend.generate(ask(double.model))
    assert double.response_formats() == ["json_object"]
    assert double.bodies("/v1/chat/completions")[0]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    # It sends no usage in streams: the prompt is counted by its /extras/tokenize/count.
    assert result.prompt_tokens > 0 and double.bodies("/extras/tokenize/count")


@pytest.mark.anyio
async def test_an_old_llama_cpp_that_refuses_json_schema_gets_json_object_and_keeps_it() -> None:
    async with serving("llama.cpp", legacy=True) as (double, backend):
        first = await backend.generate(ask(double.model))
        await backend.generate(ask(double.model))
    assert double.response_formats() == ["json_schema", "json_object", "json_object"]
    assert json.loads(first.text) == {"code": ""} and double.constrained == [SCHEMA, SCHEMA]


@pytest.mark.anyio
async def test_a_server_that_refuses_the_json_object_it_got_is_sent_json_schema() -> None:
    # Its model list reads like llama-cpp-python's, so it gets json_object first; it takes only json_schema.
    async with serving("lmstudio", owned_by="me") as (double, backend):
        await backend.generate(ask(double.model))
        await backend.generate(ask(double.model))
    assert double.response_formats() == ["json_object", "json_schema", "json_schema"]


@pytest.mark.anyio
async def test_a_server_refusing_both_forms_fails_with_what_to_do() -> None:
    async with serving("llama.cpp", legacy=True) as (double, backend):
        double.forms = {"text"}
        with pytest.raises(BackendError, match="refuses both forms of response_format") as caught:
            await backend.generate(ask(double.model))
    assert "--backend ollama" in str(caught.value) and not caught.value.retryable
    assert double.response_formats() == ["json_schema", "json_object"]


@pytest.mark.anyio
async def test_free_text_goes_without_response_format_and_the_stream_carries_usage() -> None:
    async with serving("llama.cpp") as (double, backend):
        double.reply("x = 1\n")
        pieces: list[str] = []
        result = await backend.generate(ask(double.model, schema=None), on_token=pieces.append)
    assert "response_format" not in double.bodies("/v1/chat/completions")[0]
    assert result.text == "".join(pieces) == "x = 1\n" and result.completion_tokens == 2 and result.prompt_tokens == 6
    assert double.bodies("/props") == []  # no schema: nothing to learn about the server first


@pytest.mark.anyio
async def test_ollamas_v1_is_recognised_by_its_api_version() -> None:
    async with serving("ollama", version="0.13.1") as (_, backend):
        facts = await backend.facts()
    assert (facts.kind, facts.version, facts.slot_context) == ("ollama", "0.13.1", 4096)


@pytest.mark.anyio
async def test_a_prompt_longer_than_one_slot_is_refused_by_llama_cpp() -> None:
    async with serving("llama.cpp", n_ctx=4096, total_slots=2) as (double, backend):
        long = GenerateRequest(model=double.model, messages=[ChatMessage("user", "x" * 4 * 2048)])
        with pytest.raises(BackendError, match="exceeds the available context size"):
            await backend.generate(long)


@pytest.mark.anyio
async def test_parallelism_is_the_slots_given_and_never_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLAMA_NUM_PARALLEL", "7")
    monkeypatch.setenv("LOCAL_LLM_OPENAI_PARALLEL", "7")
    built = [make_backend(name, base_url="http://127.0.0.1:9", slots=slots)
             for name in ("ollama", "openai") for slots in (1, 3)]
    try:
        assert [b.parallelism for b in built] == [1, 3, 1, 3]
        assert make_backend("embedded", slots=3).parallelism == 1  # one generation at a time in-process
    finally:
        for b in built:
            await b.aclose()


@pytest.mark.anyio
async def test_llama_cpps_overflow_is_a_prompt_too_long_and_its_tokenizer_counts_ahead() -> None:
    async with serving("llama.cpp", n_ctx=4096, total_slots=2) as (double, backend):
        long = GenerateRequest(model=double.model, messages=[ChatMessage("user", "x" * 4 * 2048)], num_ctx=2048)
        count = await backend.count_prompt(long)
        with pytest.raises(PromptTooLong) as caught:
            await backend.generate(long)
    assert count.exact and count.server_refuses_overflow and count.tokens > 2048
    assert caught.value.refused_by == "server" and caught.value.num_ctx == 2048 and not caught.value.retryable


@pytest.mark.anyio
async def test_ollamas_v1_is_known_to_cut_overlong_prompts_silently() -> None:
    async with serving("ollama", version="0.13.1") as (double, backend):
        count = await backend.count_prompt(GenerateRequest(model=double.model, messages=[ChatMessage("user", "x")]))
    assert not count.server_refuses_overflow and not count.exact
    assert count.unguarded is not None and "--backend ollama" in count.unguarded


@pytest.mark.anyio
async def test_inline_reasoning_from_an_openai_server_is_counted_and_never_the_answer() -> None:
    async with serving("vllm") as (double, backend):
        double.reply("<think>plan the file</think>" + '{"code": "x = 1"}')
        result = await backend.generate(ask(double.model))
    assert result.text == '{"code": "x = 1"}' and result.thinking_tokens > 0


@pytest.mark.anyio
async def test_litellms_deployments_give_the_groups_smallest_context_and_its_slots() -> None:
    async with serving("litellm", deployments=[(8192, 2), (4096, 2), (None, 2)]) as (double, backend):
        facts = await backend.facts()
    assert facts.kind == "litellm"
    assert facts.groups[double.model] == GroupFacts(deployments=3, context=4096, slots=6)


@pytest.mark.anyio
async def test_a_runs_route_key_goes_as_the_user_field() -> None:
    async with serving("llama.cpp") as (double, backend):
        request = GenerateRequest(model=double.model, messages=[ChatMessage("user", "hi")], route_key="run-abc123")
        await backend.generate(request)
    assert double.bodies("/v1/chat/completions")[-1]["user"] == "run-abc123"


@pytest.mark.anyio
async def test_a_server_that_is_gone_is_an_infrastructure_fault_and_a_bad_request_is_not() -> None:
    async with serving("vllm") as (double, backend):
        url = double.url
        with pytest.raises(BackendError) as wrong:
            await backend.generate(ask("not-served"))
    assert not wrong.value.infrastructure
    gone = OpenAIBackend(url)
    try:
        with pytest.raises(BackendError) as refused:
            await gone.generate(ask("m", schema=None))
    finally:
        await gone.aclose()
    assert refused.value.retryable and refused.value.infrastructure


@pytest.mark.anyio
async def test_concurrent_generations_refused_one_form_all_switch_to_the_other() -> None:
    # Seen behind LiteLLM with two slots: a refusal that came back after another generation had switched the form was
    # charged to the new form, and the run ended with "refuses both forms".
    async with serving("llama.cpp", legacy=True) as (double, backend):
        results = []

        async def one() -> None:
            results.append(await backend.generate(ask(double.model)))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(one)
    assert len(results) == 6
    assert double.response_formats().count("json_object") == 6
