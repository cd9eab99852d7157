"""Time limits that end (engine/delegation/pace.py and the watchdog in generation.generate): a backend that never
sends a first token, trickles bytes without tokens, stalls after its first tokens, or writes too slowly ends its
attempt with a retryable error, through the real Ollama backend against the Ollama double."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation.generation import Slots, generate
from engine.delegation.pace import FIRST_TOKEN_ENV, MIN_RATE_ENV, RATE_WINDOW_ENV, Pace, PaceLimits
from engine.errors import InvalidArgument
from engine.executor.backends.base import BackendError, ChatMessage, GenerateRequest
from engine.executor.backends.ollama import OllamaBackend
from engine.progress import no_progress
from engine.testing.ollama_double import Fault, OllamaDouble
from engine.testing.scripted import files_answer, use_backend

MODEL = "deepseek-coder:6.7b"
QUICK = PaceLimits(first_token_s=0.6, min_tokens_per_s=2.0, window_s=0.8)
LONG_ANSWER = " ".join(f"w{i}" for i in range(30))


def test_no_first_token_within_the_bound_is_a_problem_naming_its_setting() -> None:
    pace = Pace(PaceLimits(first_token_s=10, min_tokens_per_s=1, window_s=5), started=100.0)
    assert pace.observe(109.9, 0) is None
    problem = pace.observe(110.0, 0)
    assert problem is not None and "no first token within 10 s" in problem and FIRST_TOKEN_ENV in problem


def test_the_rate_is_judged_over_a_window_once_tokens_flow() -> None:
    pace = Pace(PaceLimits(first_token_s=10, min_tokens_per_s=1, window_s=5), started=0.0)
    assert pace.observe(8.0, 1) is None  # first token at 8 s: the first-token bound no longer applies
    for t, n in ((9.0, 3), (11.0, 6), (12.9, 8)):
        assert pace.observe(t, n) is None  # under a window since the first token: not judged yet
    assert pace.observe(13.0, 9) is None  # 8 tokens in the 5 s since the first one
    assert pace.observe(16.0, 12) is None  # measured from the sample at 11 s: 6 tokens in 5 s
    problem = pace.observe(17.0, 12)  # from the sample at 11 s still (none at 12 s): 6 tokens in 6 s ...
    assert problem is None
    problem = pace.observe(18.0, 12)  # ... from the one at 13 s: 3 tokens in 5 s
    assert problem is not None and "0.60 tokens/s" in problem and MIN_RATE_ENV in problem


def test_a_pause_shorter_than_the_window_is_not_a_stall() -> None:
    pace = Pace(PaceLimits(first_token_s=10, min_tokens_per_s=1, window_s=10), started=0.0)
    pace.observe(1.0, 1)
    pace.observe(2.0, 40)
    assert pace.observe(11.0, 40) is None  # 39 tokens in the last 9-10 s


def test_zero_turns_a_bound_off() -> None:
    pace = Pace(PaceLimits(first_token_s=0, min_tokens_per_s=0, window_s=1), started=0.0)
    assert pace.observe(10_000.0, 0) is None
    pace.observe(10_001.0, 1)
    assert pace.observe(20_000.0, 1) is None


def test_limits_come_from_the_environment_and_bad_values_name_the_variable() -> None:
    assert PaceLimits.from_env({}) == PaceLimits()
    limits = PaceLimits.from_env({FIRST_TOKEN_ENV: "30", MIN_RATE_ENV: "0", RATE_WINDOW_ENV: "15"})
    assert limits == PaceLimits(first_token_s=30, min_tokens_per_s=0, window_s=15)
    for env in ({FIRST_TOKEN_ENV: "soon"}, {MIN_RATE_ENV: "-1"}, {FIRST_TOKEN_ENV: "nan"}, {RATE_WINDOW_ENV: "0"}):
        with pytest.raises(InvalidArgument) as caught:
            PaceLimits.from_env(env)
        assert next(iter(env)) in str(caught.value)


@pytest.fixture
async def backend(ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OllamaBackend]:
    monkeypatch.setenv("LOCAL_LLM_REQUEST_TIMEOUT", "30")  # long: the watchdog, not the read timeout, must end it
    b = OllamaBackend(ollama_double.url)
    try:
        yield b
    finally:
        await b.aclose()


async def _generate(backend: OllamaBackend, limits: PaceLimits = QUICK) -> None:
    request = GenerateRequest(model=MODEL, messages=[ChatMessage("user", "write it")])
    await generate(backend, request, slots=Slots(), progress=no_progress, attempt=1, total=1, limits=limits)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (Fault.delay(20), "no first token"),  # nothing at all before the first byte
        (Fault.trickle(0.1, blank=True), "no first token"),  # bytes, but never a token
        (Fault.trickle(0.1, after_chunks=3, blank=True), "tokens/s"),  # tokens, then a stall kept alive
        (Fault.trickle(1.0, after_chunks=1), "tokens/s"),  # a token a second: under the minimum of 2
    ],
    ids=["no-first-byte", "bytes-without-tokens", "stall-after-tokens", "too-slow"],
)
async def test_a_trickling_or_stalled_backend_ends_the_attempt_with_a_retryable_error(
    backend: OllamaBackend, ollama_double: OllamaDouble, fault: Fault, says: str
) -> None:
    ollama_double.reply(LONG_ANSWER)
    ollama_double.fault(fault)
    started = time.monotonic()
    with anyio.fail_after(10), pytest.raises(BackendError) as caught:
        await _generate(backend)
    assert caught.value.retryable and says in str(caught.value)
    assert time.monotonic() - started < 4


@pytest.mark.anyio
async def test_a_steady_stream_under_the_same_limits_completes(
    backend: OllamaBackend, ollama_double: OllamaDouble,
) -> None:
    ollama_double.reply(LONG_ANSWER)
    ollama_double.fault(Fault.trickle(0.05))  # 20 tokens/s, for 1.5 s: past the window, over the minimum
    with anyio.fail_after(10):
        await _generate(backend)


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_run_whose_first_attempt_stalls_retries_and_succeeds(
    engine: Engine, ollama_double: OllamaDouble, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FIRST_TOKEN_ENV, "0.5")
    monkeypatch.setenv(RATE_WINDOW_ENV, "0.5")
    backend = OllamaBackend(ollama_double.url)
    use_backend(engine, backend, model=MODEL)
    ollama_double.fault(Fault.trickle(0.1, blank=True))
    ollama_double.reply(files_answer({"out.txt": "fine\n"}))
    ollama_double.reply(files_answer({"out.txt": "fine\n"}))
    try:
        with anyio.fail_after(15):
            result = await engine.delegate(task="write out.txt", output_files=["out.txt"], max_attempts=2)
    finally:
        await backend.aclose()
    assert result["state"] == "done" and result["attempts"] == 2
    assert (project_dir / "out.txt").read_text() == "fine\n"
    failed = [e for e in engine.store.events(result["run_id"]) if e.event == "generation_failed"]
    assert len(failed) == 1 and "no first token" in failed[0].payload["detail"]
