"""R2: backend faults during a delegation, through the real runner and the real Ollama backend (HTTP to the double).

Each fault is tried twice over: once (the next attempt succeeds: the run must end `done` after a retry) and on every
attempt (the run must end `failed` with an error that says what happened). "No first byte" uses a 1 s read timeout
(LOCAL_LLM_REQUEST_TIMEOUT); "model missing" deletes the session's model from the double (Ollama's 404), which is not
retried and must tell the user to pull it. Every case runs under a deadline: a hang is a loss, and so is a crash.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from bench.reliability.common import (
    MODEL,
    ScenarioResult,
    answer_for,
    journal_problems,
    log_problems,
    started_double,
    temp_files,
)
from engine import Engine, Project
from engine.executor.backends.ollama import REQUEST_TIMEOUT_ENV
from engine.testing.ollama_double import Fault, OllamaDouble

__all__ = ["FAULTS", "FaultCase", "make_cases", "run"]

REQUEST_TIMEOUT_S = 1.0
CASE_DEADLINE_S = 30.0
ORIGINAL = b"original\n"


@dataclass(frozen=True)
class FaultKind:
    name: str
    make: Callable[[random.Random], Fault] | None
    """None: the model is deleted from the double instead."""
    says: str
    """A fragment the error of a run that fails on it must contain (case-insensitive)."""
    retryable: bool = True


FAULTS: tuple[FaultKind, ...] = (
    FaultKind("HTTP 500", lambda rng: Fault.http(500), "500"),
    FaultKind("503 queue full", lambda rng: Fault.queue_full(), "busy"),
    FaultKind("reset mid-stream", lambda rng: Fault.reset_mid_stream(after_chunks=rng.randint(0, 3)), "connection"),
    FaultKind("no first byte", lambda rng: Fault.delay(REQUEST_TIMEOUT_S * 4), "timeout"),
    FaultKind("malformed JSON", lambda rng: Fault.malformed_json(), "malformed"),
    FaultKind("model missing", None, "pull", retryable=False),
)


@dataclass(frozen=True)
class FaultCase:
    index: int
    kind: FaultKind
    every_time: bool
    max_attempts: int
    seed: int

    @property
    def expected(self) -> str:
        return "failed" if self.every_time or not self.kind.retryable else "done"

    def label(self) -> str:
        return f"case {self.index}: {self.kind.name} {'on every attempt' if self.every_time else 'once'}"


def make_cases(short: bool, seed: int) -> list[FaultCase]:
    rng = random.Random(seed)
    cases: list[FaultCase] = []
    for _ in range(1 if short else 4):
        for kind in FAULTS:
            for every_time in ((True,) if not kind.retryable else (False, True)):
                cases.append(FaultCase(len(cases), kind, every_time, rng.choice((2, 3)), rng.randrange(1 << 30)))
    return cases


def _good_answer(body: Mapping[str, Any]) -> str:
    schema = body.get("format") or {}
    paths = schema.get("properties", {}).get("files", {}).get("items", {}).get("properties", {}).get(
        "path", {}).get("enum", [])
    return answer_for({p: "good\n" for p in paths})


@contextmanager
def _environment(double: OllamaDouble) -> Iterator[None]:
    """The in-process backend reads these when the session's backend is built."""
    saved = {k: os.environ.get(k) for k in ("OLLAMA_HOST", REQUEST_TIMEOUT_ENV)}
    os.environ.update({"OLLAMA_HOST": double.host, REQUEST_TIMEOUT_ENV: str(REQUEST_TIMEOUT_S)})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


async def _one(case: FaultCase, engine: Engine, double: OllamaDouble, root: Path) -> list[str]:
    rng = random.Random(case.seed)
    directory = root / f"r2/c{case.index:03d}"
    directory.mkdir(parents=True)
    (directory / "a.txt").write_bytes(ORIGINAL)
    a, b = f"r2/c{case.index:03d}/a.txt", f"r2/c{case.index:03d}/b.txt"
    if case.kind.make is None:
        removed = double.remove_model(MODEL)
    else:
        for _ in range(case.max_attempts if case.every_time else 1):
            double.fault(case.kind.make(rng))
    problems: list[str] = []
    started = time.monotonic()
    try:
        with anyio.fail_after(CASE_DEADLINE_S):
            view = await engine.delegate(task=f"write a and b ({case.label()})", output_files=[a, b],
                                         verify=f"grep -q good {a} && grep -q good {b}",
                                         max_attempts=case.max_attempts)
    except TimeoutError:
        return [f"hung: no end within {CASE_DEADLINE_S}s"]
    except Exception as exc:  # the runner must turn every backend fault into a run state, never raise
        return [f"delegate raised {type(exc).__name__}: {exc}"]
    finally:
        if case.kind.make is None and removed is not None:
            double.add_model(removed)
        double.clear_faults()  # a fault the run did not consume must not leak into the next case
    elapsed = time.monotonic() - started
    state, error = view["state"], str(view.get("error") or "")
    if state != case.expected:
        problems.append(f"ended {state}, expected {case.expected} (error: {error[:200]})")
    if state == "done" and view.get("attempts") != 2:
        problems.append(f"done after {view.get('attempts')} attempts, expected 2 (fault, then success)")
    if state == "failed" and case.kind.says not in error.lower():
        problems.append(f"the error does not say {case.kind.says!r}: {error[:300]}")
    files = {p: (root / p).read_bytes() if (root / p).exists() else None for p in (a, b)}
    if state == "done" and files != {a: b"good\n", b: b"good\n"}:
        problems.append(f"done but files hold {files}")
    if state == "failed" and files != {a: ORIGINAL, b: None}:
        problems.append(f"failed but files are not the originals: {files}")
    if leftovers := temp_files(directory):
        problems.append(f"temp files left: {leftovers}")
    record = engine.store.get(view["run_id"])
    problems += journal_problems(engine.store, record)
    problems += log_problems(root, record)
    if elapsed > CASE_DEADLINE_S / 2:
        problems.append(f"took {elapsed:.1f}s")
    return problems


async def _run(cases: list[FaultCase], result: ScenarioResult) -> None:
    with started_double() as double, _environment(double), tempfile.TemporaryDirectory(prefix="rel-r2-") as tmp:
        double.responder = _good_answer
        root = Path(tmp) / "project"
        root.mkdir()
        engine = Engine(Project.resolve(root))
        try:
            with anyio.fail_after(CASE_DEADLINE_S):
                await engine.enable(llm=MODEL, backend="ollama")
            for case in cases:
                result.record(await _one(case, engine, double, root), case.label())
            with anyio.fail_after(CASE_DEADLINE_S):
                status = await engine.status()
            if status.get("state") not in ("loaded", "delegating"):
                result.notes.append(f"session ended {status.get('state')} after the faults")
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await engine.end_session()
            engine.close()


def run(*, short: bool, seed: int) -> ScenarioResult:
    result = ScenarioResult("R2", "backend faults: 500, 503, reset, no first byte, bad JSON, model missing")
    cases = make_cases(short, seed)
    started = time.monotonic()
    anyio.run(_run, cases, result)
    result.seconds = time.monotonic() - started
    return result
