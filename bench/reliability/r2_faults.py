"""R2: backend faults during a delegation, through the real runner and the real Ollama backend (HTTP to the double).

Each fault is tried twice over: once (the next attempt succeeds: the run must end `done` after a retry) and on every
attempt (the run must end `failed` with an error that says what happened). The faults that can hit a plain request
are also injected during `enable`: into the pull of a model that is missing, and into the load; enable must fail with
a reason that says what happened, leave the session `failed` (not stuck in `starting`), and the next enable must
load the model. "No first byte" uses a 1 s read timeout
(LOCAL_LLM_REQUEST_TIMEOUT); "model missing" deletes the session's model from the double (Ollama's 404), which is not
retried and must tell the user to pull it. Every case runs under a deadline: a hang is a loss, and so is a crash.
"""

from __future__ import annotations

import dataclasses
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
from engine import EnableFailed, Engine, Project
from engine.executor.backends.ollama import REQUEST_TIMEOUT_ENV
from engine.testing.ollama_double import Fault, OllamaDouble

__all__ = ["ENABLE_FAULTS", "FAULTS", "EnableCase", "FaultCase", "make_cases", "make_enable_cases", "run"]

REQUEST_TIMEOUT_S = 1.0
CASE_DEADLINE_S = 30.0
ORIGINAL = b"original\n"


@dataclass(frozen=True)
class FaultKind:
    name: str
    make: Callable[[random.Random], Fault] | None
    """None: the model is deleted from the double instead."""
    says: tuple[str, ...]
    """Fragments, one of which the error of a run that fails on it must contain (case-insensitive)."""
    retryable: bool = True


FAULTS: tuple[FaultKind, ...] = (
    FaultKind("HTTP 500", lambda rng: Fault.http(500), ("500",)),
    FaultKind("503 queue full", lambda rng: Fault.queue_full(), ("busy",)),
    FaultKind("reset mid-stream", lambda rng: Fault.reset_mid_stream(after_chunks=rng.randint(0, 3)),
              ("connection",)),
    # Two limits of 1 s race here, the request's read timeout and the pace's first token (PACE_ENV): on a loaded
    # machine either may fire first, and each names the fault.
    FaultKind("no first byte", lambda rng: Fault.delay(REQUEST_TIMEOUT_S * 4), ("timeout", "no first token")),
    FaultKind("malformed JSON", lambda rng: Fault.malformed_json(), ("malformed",)),
    FaultKind("stalled stream", lambda rng: Fault.trickle(0.2, after_chunks=rng.randint(0, 2), blank=True),
              ("token",)),
    FaultKind("model missing", None, ("pull",), retryable=False),
)
ENABLE_FAULTS = ("HTTP 500", "reset mid-stream", "no first byte", "malformed JSON")
"""The faults that hit enable's pull and load (the others are about a generation's stream)."""
ENABLE_PATHS = {"pull": ("/api/pull",), "load": ("/api/generate",)}
PACE_ENV = {"LOCAL_LLM_FIRST_TOKEN_S": "1", "LOCAL_LLM_RATE_WINDOW_S": "1"}
"""Short time limits for the stalled stream (engine/delegation/pace.py); the double answers at once otherwise."""


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


@dataclass(frozen=True)
class EnableCase:
    index: int
    kind: FaultKind
    phase: str
    """`pull` (the model is missing and must be pulled) or `load`."""
    seed: int

    def label(self) -> str:
        return f"enable case {self.index}: {self.kind.name} during the {self.phase}"


def make_enable_cases(short: bool, seed: int) -> list[EnableCase]:
    rng = random.Random(seed + 1)
    kinds = [k for k in FAULTS if k.name in ENABLE_FAULTS]
    return [EnableCase(n, kind, phase, rng.randrange(1 << 30))
            for n, (kind, phase) in enumerate((k, p) for _ in range(1 if short else 2) for k in kinds
                                              for p in ENABLE_PATHS)]


@contextmanager
def _environment(double: OllamaDouble) -> Iterator[None]:
    """The in-process backend reads these when the session's backend is built."""
    saved = {k: os.environ.get(k) for k in ("OLLAMA_HOST", REQUEST_TIMEOUT_ENV, *PACE_ENV)}
    os.environ.update({"OLLAMA_HOST": double.host, REQUEST_TIMEOUT_ENV: str(REQUEST_TIMEOUT_S), **PACE_ENV})
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
    if state == "failed" and not any(word in error.lower() for word in case.kind.says):
        problems.append(f"the error does not say {' or '.join(case.kind.says)!r}: {error[:300]}")
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


async def _enable_once(case: EnableCase, engine: Engine, double: OllamaDouble) -> list[str]:
    """Enable with the fault in the way: a clear failure, then a clean enable."""
    with anyio.fail_after(CASE_DEADLINE_S):
        await engine.disable()
    removed = double.remove_model(MODEL) if case.phase == "pull" else None
    make = case.kind.make
    assert make is not None
    double.fault(dataclasses.replace(make(random.Random(case.seed)), paths=ENABLE_PATHS[case.phase]))
    problems: list[str] = []
    try:
        with anyio.fail_after(CASE_DEADLINE_S):
            await engine.enable(llm=MODEL, backend="ollama")
        problems.append("enable succeeded through the fault")
    except EnableFailed as exc:
        if not any(word in exc.reason.lower() for word in case.kind.says):
            problems.append(f"the reason does not say {' or '.join(case.kind.says)!r}: {exc.reason[:300]}")
        if exc.status.get("state") != "failed":
            problems.append(f"session left {exc.status.get('state')}, expected failed")
    except TimeoutError:
        return [f"enable hung: no end within {CASE_DEADLINE_S}s"]
    except Exception as exc:  # anything but EnableFailed is a crash
        problems.append(f"enable raised {type(exc).__name__}: {exc}")
    finally:
        double.clear_faults()
    if removed is not None and MODEL in double.models:
        problems.append("the model was pulled through the fault")
    try:
        with anyio.fail_after(CASE_DEADLINE_S):
            status = await engine.enable(llm=MODEL, backend="ollama")
        if status["state"] != "loaded" or MODEL not in double.loaded:
            problems.append(f"the next enable left the session {status['state']}")
    except Exception as exc:
        problems.append(f"the next enable failed: {type(exc).__name__}: {exc}"[:300])
    return problems


async def _run(cases: list[FaultCase], enable_cases: list[EnableCase], result: ScenarioResult) -> None:
    with started_double(pullable=True) as double, _environment(double), \
            tempfile.TemporaryDirectory(prefix="rel-r2-") as tmp:
        double.responder = _good_answer
        root = Path(tmp) / "project"
        root.mkdir()
        engine = Engine(Project.resolve(root))
        try:
            with anyio.fail_after(CASE_DEADLINE_S):
                await engine.enable(llm=MODEL, backend="ollama")
            for case in cases:
                result.record(await _one(case, engine, double, root), case.label())
            for enable_case in enable_cases:
                result.record(await _enable_once(enable_case, engine, double), enable_case.label())
            with anyio.fail_after(CASE_DEADLINE_S):
                status = await engine.status()
            if status.get("state") not in ("loaded", "delegating"):
                result.notes.append(f"session ended {status.get('state')} after the faults")
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await engine.end_session()
            engine.close()


def run(*, short: bool, seed: int) -> ScenarioResult:
    result = ScenarioResult("R2", "backend faults: 500, 503, reset, no first byte, bad JSON, stall, model missing; "
                                  "in enable's pull and load")
    cases = make_cases(short, seed)
    started = time.monotonic()
    anyio.run(_run, cases, make_enable_cases(short, seed), result)
    result.seconds = time.monotonic() - started
    return result
