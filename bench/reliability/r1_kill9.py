"""R1: `local-llm delegate` killed with SIGKILL at random points, then `local-llm resume`; every run must end right.

Each case is one delegation (its own two output files: `a.txt` exists with odd bytes, `b.txt` does not) whose answers
are scripted by attempt: bad (verify fails) before attempt `good_from`, good from then on, so runs pass through
retrying and rolling_back. The process is killed either in a chosen state (the runner's test pause hook holds it
there) or after a seeded random delay. After `resume` the case is checked:

- the run is finished, `done` exactly when its verify passes on the final content, with the expected outcome;
- done: both files hold the good answer; failed: `a.txt` is byte-identical to before, `b.txt` absent;
- no temp file of an atomic write is left;
- the journal: versions 1..n, one `start`, one generation per attempt; the delegation log has exactly one line for
  the run, agreeing with the journal on state and attempts.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.reliability.common import (
    REPO,
    ScenarioResult,
    answer_for,
    cli,
    cli_env,
    enabled_project,
    journal_problems,
    log_problems,
    started_double,
    temp_files,
)
from engine.project import Project
from engine.store.db import MachineRecord, Store

__all__ = ["Case", "make_cases", "run"]

ORIGINAL_A = b"original a\r\n\xe2\x9c\x93 no newline"
MARKER = re.compile(r"\[r1 case (\d+)\]")
STATES = ("pending", "delegating", "writing", "verifying", "retrying", "rolling_back")
REACH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Case:
    index: int
    good_from: int
    """First attempt whose answer passes verify (beyond max_attempts: the run fails and rolls back)."""
    max_attempts: int
    kill_state: str | None
    """Kill once the run is held in this state; None: kill after `kill_after` seconds."""
    kill_after: float
    latency: float
    """Seconds the double takes per answer."""
    kill_resume_after: float | None = None
    """Also kill the first `resume` after this many seconds (a crash during recovery); a second resume finishes."""

    @property
    def directory(self) -> str:
        return f"r1/c{self.index:03d}"

    @property
    def expected(self) -> str:
        return "done" if self.good_from <= self.max_attempts else "failed"

    def paths(self) -> tuple[str, str]:
        return f"{self.directory}/a.txt", f"{self.directory}/b.txt"

    def answer(self, attempt: int) -> dict[str, str]:
        word = "good" if attempt >= self.good_from else "bad"
        a, b = self.paths()
        return {a: f"{word} a of case {self.index}\n", b: f"{word} b of case {self.index}\n"}

    def verify(self) -> str:
        a, b = self.paths()
        return f"grep -q good {a} && grep -q good {b}"

    def label(self) -> str:
        point = f"in {self.kill_state}" if self.kill_state else f"after {self.kill_after:.2f}s"
        if self.kill_resume_after is not None:
            point += f", resume killed after {self.kill_resume_after:.2f}s"
        return f"case {self.index} (good from attempt {self.good_from}/{self.max_attempts}, killed {point})"


def reachable(good_from: int, max_attempts: int) -> list[str]:
    """States a run with this script passes through (so a kill there can happen)."""
    states = ["pending", "delegating", "writing", "verifying"]
    if good_from > 1 and max_attempts > 1:
        states.append("retrying")
    if good_from > max_attempts:
        states.append("rolling_back")
    return states


def make_cases(count: int, seed: int) -> list[Case]:
    """Seeded cases; the first ones cover every state once, the rest mix state kills and random-time kills."""
    rng = random.Random(seed)
    cases: list[Case] = []
    for index in range(count):
        if index < len(STATES):
            state: str | None = STATES[index]
            good_from, max_attempts = {"retrying": (2, 2), "rolling_back": (3, 2)}.get(state, (1, 2))
        else:
            max_attempts = rng.choice((1, 2, 3))
            good_from = rng.choice((1, 1, 2, 3, 4))
            state = rng.choice(reachable(good_from, max_attempts)) if rng.random() < 0.5 else None
        # A delegation takes about 0.2 s plus the double's latency per attempt (measured: 0.53 s with one attempt
        # at 0.3 s): the kills are spread over that span, so most land while the run is in flight.
        latency = round(rng.uniform(0.1, 0.6), 2)
        kill_after = round(rng.uniform(0.15, 0.3 + latency * min(good_from, max_attempts)), 2)
        again = round(rng.uniform(0.15, 0.3 + latency), 2) if index >= len(STATES) and rng.random() < 0.25 else None
        cases.append(Case(index, good_from, max_attempts, state, kill_after, latency, again))
    return cases


def _responder(cases: Mapping[int, Case]) -> Any:
    """Answers from the request alone (case marker in the task, attempt in the seed): a killed and resumed attempt
    gets the same answer again, whatever the order of requests."""

    def respond(body: Mapping[str, Any]) -> str:
        match = MARKER.search(json.dumps(body.get("messages")))
        if match is None:
            return answer_for({})
        case = cases[int(match.group(1))]
        time.sleep(case.latency)
        return answer_for(case.answer(int((body.get("options") or {}).get("seed") or 1)))

    return respond


def _find(store: Store, case: Case) -> MachineRecord | None:
    tag = f"[r1 case {case.index}]"
    for record in store.machines(kind="delegation"):
        if tag in str(record.data.get("task", "")):
            return record
    return None


def _held(store: Store, case: Case, project: Path) -> bool:
    """The run is in the kill state (and, in writing / rolling_back, past its first file)."""
    record = _find(store, case)
    if record is None or record.state != case.kill_state:
        return False
    a = project / case.paths()[0]
    current = a.read_bytes() if a.exists() else None
    if case.kill_state == "writing":
        return current != ORIGINAL_A
    if case.kill_state == "rolling_back":
        return current == ORIGINAL_A
    return True


def _landed(store: Store, case: Case) -> str:
    """Where the run was when the kill came."""
    record = _find(store, case)
    if record is None:
        return "not created yet"
    return "after its end" if record.state in ("done", "failed", "cancelled") else record.state


def _kill_at(proc: subprocess.Popen[bytes], seconds: float, where: Callable[[], str]) -> str | None:
    """SIGKILL `proc` after `seconds` unless it ended first; reaped either way (a zombie would still look like a
    live owner). Returns `where()` at the moment of the kill, None if the process ended first."""
    try:
        proc.wait(timeout=seconds)
        return None
    except subprocess.TimeoutExpired:
        state = where()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return state


def _kill_and_resume(
    case: Case, project: Path, env: dict[str, str], store: Store, work: Path, landed: list[str]
) -> list[str]:
    release = work / f"release-{case.index}"
    run_env = dict(env)
    if case.kill_state:
        run_env.update({"LOCAL_LLM_TEST_PAUSE_IN": case.kill_state, "LOCAL_LLM_TEST_PAUSE_FILE": str(release)})
    a, b = case.paths()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_adapter", "delegate", f"write a and b [r1 case {case.index}]", "--output", a,
         "--output", b, "--verify", case.verify(), "--max-attempts", str(case.max_attempts), "--json"],
        env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
    )
    problems: list[str] = []
    try:
        deadline = time.monotonic() + (REACH_TIMEOUT_S if case.kill_state else case.kill_after)
        while time.monotonic() < deadline and proc.poll() is None:
            if case.kill_state and _held(store, case, project):
                break
            time.sleep(0.02)
        else:
            if case.kill_state and proc.poll() is None:
                problems.append(f"never reached {case.kill_state} within {REACH_TIMEOUT_S}s")
        landed.append(_kill_at(proc, 0, lambda: _landed(store, case)) or "after its end")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        release.touch()
    if case.kill_resume_after is not None:
        first = subprocess.Popen([sys.executable, "-m", "mcp_adapter", "resume", "--json"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        if state := _kill_at(first, case.kill_resume_after, lambda: _landed(store, case)):
            landed.append(f"resume killed {state}" if state.startswith("after") else f"resume killed in {state}")
    resumed = cli(env, "resume", "--json")
    if resumed.returncode != 0:
        problems.append(f"resume exited {resumed.returncode}: {resumed.stderr[-300:]}")
    return problems


def check_case(case: Case, project: Path, store: Store) -> list[str]:
    problems: list[str] = []
    a_path, b_path = (project / p for p in case.paths())
    record = _find(store, case)
    leftovers = temp_files(project / case.directory) if (project / case.directory).exists() else []
    if leftovers:
        problems.append(f"temp files left: {leftovers}")
    if record is None:
        # Killed before the run was created: nothing may have changed.
        if a_path.read_bytes() != ORIGINAL_A or b_path.exists():
            problems.append("files changed although no run was created")
        return problems
    if record.state not in ("done", "failed", "cancelled"):
        return [*problems, f"run {record.id} still {record.state} after resume"]
    if record.state != case.expected and not _gave_up(record):
        problems.append(f"ended {record.state}, expected {case.expected} ({record.data.get('error')})")
    content = {p: (project / p).read_text() if (project / p).exists() else None for p in case.paths()}
    if record.state == "done":
        wanted = {p: c for p, c in case.answer(case.good_from).items()}
        if content != wanted:
            problems.append(f"done but files hold {content}")
    else:
        if a_path.read_bytes() != ORIGINAL_A:
            problems.append(f"{record.state} but a.txt is not the original: {a_path.read_bytes()[:80]!r}")
        if b_path.exists():
            problems.append(f"{record.state} but b.txt (new) was left behind")
    verified = subprocess.run(["sh", "-c", case.verify()], cwd=project, capture_output=True, check=False,
                              timeout=30).returncode == 0
    if verified != (record.state == "done"):
        problems.append(f"state {record.state} but verify on the final content {'passes' if verified else 'fails'}")
    recoveries = [e for e in store.events(record.id) if e.event == "recover"]
    if len(recoveries) > (2 if case.kill_resume_after is not None else 1):
        problems.append(f"recovered {len(recoveries)} times")
    problems += journal_problems(store, record)
    problems += log_problems(project, record)
    return problems


def _gave_up(record: MachineRecord) -> bool:
    return "gave up after" in str(record.data.get("error") or "")


def run(*, short: bool, seed: int, count: int | None = None) -> ScenarioResult:
    result = ScenarioResult("R1", "kill -9 during delegations, then resume")
    cases = make_cases(count or (10 if short else 50), seed)
    started = time.monotonic()
    with started_double() as double, tempfile.TemporaryDirectory(prefix="rel-r1-") as tmp:
        double.responder = _responder({c.index: c for c in cases})
        project = enabled_project(Path(tmp) / "project", double)
        env = cli_env(project, double)
        store = Store(Project.resolve(project).state_db)
        landed: list[str] = []
        try:
            for case in cases:
                directory = project / case.directory
                directory.mkdir(parents=True)
                (directory / "a.txt").write_bytes(ORIGINAL_A)
                problems = _kill_and_resume(case, project, env, store, Path(tmp), landed)
                problems += check_case(case, project, store)
                result.record(problems, case.label())
        finally:
            store.close()
    counts = Counter(landed)
    result.notes.insert(0, "kills landed: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    result.seconds = time.monotonic() - started
    return result
