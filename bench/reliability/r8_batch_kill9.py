"""R8: a 20-child batch of test-file generations (`local-llm batch FILE`) killed with SIGKILL at random points, then
`local-llm resume` (itself killed too in some cases, up to ten kills in a row); every child must end exactly once.

Each case is one batch: a template over `src/*.py` (20 files) writing `tests/test_<stem>.py`, half of which exist with
odd bytes, half not. The Ollama double answers by the child's marker (its stem, in the task) and the attempt
(`options.seed`): bad before the child's `good_from`, good from then on, so children pass through retrying, and those
with `good_from` beyond `max_attempts` (2) fail and roll back. The `batch` process is killed once children are held in
a chosen state (the runner's test pause hook), once some children have ended, or after a seeded random delay; then
zero or more `resume` processes are killed after random delays; then `resume` runs to the end. Checks per case:

- the batch ended `finished`, one `start` and one terminal move in its journal; every child ended, with one `start` and
  exactly one move into a terminal state (never `done` twice), `done` exactly when its answers allow it (or given up
  after too many recoveries);
- no temp file of an atomic write is left; each output holds the journaled content of the run's last applied write
  (done) or its base (failed: the original bytes, or no file);
- no conflict reported (nobody else touched the files) and no conflict copy kept;
- the batch's recorded counts and its summary (`local-llm run BATCH --json`) equal its children's states; the
  delegation log has one line per child (agreeing with the journal) and one batch line with the same counts.
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
from collections.abc import Mapping
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
from engine.delegation.batch_views import child_line, counts
from engine.delegation.metrics import read_log
from engine.project import Project
from engine.store.db import MachineRecord, Store
from engine.store.journal import content_hash
from states import BATCH, DELEGATION, RunData

__all__ = ["Case", "make_cases", "run"]

CHILDREN = 20
MAX_ATTEMPTS = 2
ORIGINAL = b"# hand-written tests\r\n\xe2\x9c\x93 no newline"
MARKER = re.compile(r"\[r8 c(\d+) (mod\d+)\]")
STATES = ("pending", "delegating", "writing", "verifying", "retrying", "rolling_back")
REACH_TIMEOUT_S = 30.0
HELD = 2
"""A state kill waits until this many children are held in the state."""
SOME_ENDED = "some children ended"
"""A kill point that is an event, not a state: the batch is killed once a child has ended and before every child has
(no pause hook: the batch runs on until the kill). Timed kills miss it on a loaded machine, where the CLI's start
takes most of their delay."""


@dataclass(frozen=True)
class Case:
    index: int
    good_from: tuple[int, ...]
    """Per child (in stem order): the first attempt whose answer passes verify (beyond MAX_ATTEMPTS: it fails)."""
    kill_state: str | None
    """Kill the `batch` process once children are held in this state; None: after `kill_after` seconds."""
    kill_after: float
    resume_kills: tuple[float, ...]
    """Kill that many `resume` processes, each after its delay, before the last `resume` runs to the end."""
    latency: float
    max_parallel: int

    @property
    def directory(self) -> str:
        return f"r8/c{self.index:03d}"

    def stem(self, n: int) -> str:
        return f"mod{n:02d}"

    def output(self, n: int) -> str:
        return f"{self.directory}/tests/test_{self.stem(n)}.py"

    def exists(self, n: int) -> bool:
        return n % 2 == 0

    def answer(self, n: int, attempt: int) -> str:
        word = "good" if attempt >= self.good_from[n] else "bad"
        return f"# {word} tests for {self.stem(n)} of case {self.index}\ndef test_{self.stem(n)}() -> None:\n    pass\n"

    def expected(self, n: int) -> str:
        return "done" if self.good_from[n] <= MAX_ATTEMPTS else "failed"

    def spec(self) -> dict[str, Any]:
        return {"template": {"task": f"Write pytest tests for {{path}} [r8 c{self.index} {{stem}}]",
                             "task_type": "test",
                             "output": f"{self.directory}/tests/test_{{stem}}.py",
                             "verify": f"grep -q good {self.directory}/tests/test_{{stem}}.py"},
                "glob": f"{self.directory}/src/*.py", "max_attempts": MAX_ATTEMPTS, "max_parallel": self.max_parallel}

    @property
    def kills(self) -> int:
        return 1 + len(self.resume_kills)

    def label(self) -> str:
        point = ("once some children ended" if self.kill_state == SOME_ENDED else f"in {self.kill_state}"
                 if self.kill_state else f"after {self.kill_after:.2f}s")
        if self.resume_kills:
            point += f", then {len(self.resume_kills)} resume(s) killed"
        return f"case {self.index} (batch killed {point})"


def make_cases(count: int, seed: int, *, chain: int) -> list[Case]:
    """Seeded cases: the first ones kill in a chosen state (every state once in the full form), the others after a
    random delay; one case in three also kills one or two `resume`s, and the last case is killed `chain` times in a
    row (the batch, then `chain - 1` resumes)."""
    rng = random.Random(seed)
    cases: list[Case] = []
    state_cases = (*STATES, SOME_ENDED) if count >= 10 else ("writing", "verifying", SOME_ENDED)
    for index in range(count):
        # Most children pass at once; a few need a second attempt (retrying), a few fail (rolling_back). Children
        # 1 and 3 always retry, 5 and 7 always fail, so every state is reachable in every case.
        good_from = [rng.choice((1, 1, 1, 1, 2, 3)) for _ in range(CHILDREN)]
        good_from[1] = good_from[3] = 2
        good_from[5] = good_from[7] = 3
        state = state_cases[index] if index < len(state_cases) else None
        latency = round(rng.uniform(0.05, 0.25), 2)
        # The CLI takes about a second to start; a 20-child batch about 2-4 s more (measured here, 2 cores).
        kill_after = round(rng.uniform(0.8, 4.5), 2)
        if index == count - 1 and chain > 1:
            resume_kills = tuple(round(rng.uniform(0.8, 2.5), 2) for _ in range(chain - 1))
        elif rng.random() < 1 / 3:
            resume_kills = tuple(round(rng.uniform(0.8, 2.5), 2) for _ in range(rng.choice((1, 2))))
        else:
            resume_kills = ()
        cases.append(Case(index, tuple(good_from), state, kill_after, resume_kills, latency, rng.choice((2, 3, 4))))
    return cases


def _responder(cases: Mapping[int, Case]) -> Any:
    """Answers from the request alone (the case and child in the task, the attempt in the seed): a killed and
    resumed attempt gets the same answer again."""

    def respond(body: Mapping[str, Any]) -> str:
        match = MARKER.search(json.dumps(body.get("messages")))
        if match is None:
            return answer_for({})
        case = cases[int(match.group(1))]
        n = int(match.group(2)[3:])
        time.sleep(case.latency)
        return answer_for({case.output(n): case.answer(n, int((body.get("options") or {}).get("seed") or 1))})

    return respond


def _batch(store: Store, case: Case) -> MachineRecord | None:
    for record in store.machines(kind=BATCH.kind):
        if record.data.get("template") == f"{case.directory}/src/*.py":
            return record
    return None


def _children(store: Store, batch: MachineRecord) -> list[MachineRecord]:
    return [store.get(c) for c in batch.data["children"]]


def _landed(store: Store, case: Case) -> list[str]:
    """Where the kill came: the batch's state and the states its children were in (done ones counted apart)."""
    batch = _batch(store, case)
    if batch is None:
        return ["no batch yet"]
    if batch.state in BATCH.terminal:
        return ["after the batch ended"]
    states = Counter(c.state for c in _children(store, batch))
    in_flight = [f"a child in {s}" for s in DELEGATION.states if s not in DELEGATION.terminal and s != "pending"
                 and states[s]]
    ended = sum(states[s] for s in DELEGATION.terminal)
    where = [*in_flight, "no child ended yet" if not ended else
             "every child ended" if ended == CHILDREN else "some children ended"]
    if batch.state != "running":
        where.append(f"batch {batch.state}")
    return where


def _held(store: Store, case: Case, project: Path) -> bool:
    batch = _batch(store, case)
    if batch is None or case.kill_state is None:
        return False
    if case.kill_state == SOME_ENDED:
        ended = sum(1 for child in _children(store, batch) if child.state in DELEGATION.terminal)
        return 0 < ended < CHILDREN
    held = 0
    for n, child in enumerate(_children(store, batch)):
        if child.state != case.kill_state:
            continue
        path = project / case.output(n)
        on_base = (path.read_bytes() if path.exists() else None) == (ORIGINAL if case.exists(n) else None)
        # In writing and rolling_back the hook holds a child after its (only) file: moved off / back to its base.
        if case.kill_state == "writing" and on_base or case.kill_state == "rolling_back" and not on_base:
            continue
        held += 1
    return held >= (1 if case.kill_state == "rolling_back" else HELD)


def _kill(proc: subprocess.Popen[bytes], seconds: float, store: Store, case: Case, project: Path,
          landed: list[list[str]], *, wait_held: bool = False) -> bool:
    """SIGKILL `proc` after `seconds` (or once children are held in the case's state) unless it ended first; reaped
    either way (a zombie would still look like a live owner). Returns whether it was killed."""
    deadline = time.monotonic() + (REACH_TIMEOUT_S if wait_held else seconds)
    while time.monotonic() < deadline and proc.poll() is None:
        if wait_held and _held(store, case, project):
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        return False
    landed.append(_landed(store, case))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return True


def _kill_and_resume(case: Case, project: Path, env: dict[str, str], store: Store, work: Path,
                     landed: list[list[str]]) -> list[str]:
    problems: list[str] = []
    spec = work / f"batch-{case.index}.json"
    spec.write_text(json.dumps(case.spec()))
    release = work / f"release-{case.index}"
    run_env = dict(env)
    if case.kill_state and case.kill_state != SOME_ENDED:
        run_env.update({"LOCAL_LLM_TEST_PAUSE_IN": case.kill_state, "LOCAL_LLM_TEST_PAUSE_FILE": str(release)})
    proc = subprocess.Popen([sys.executable, "-m", "mcp_adapter", "batch", str(spec), "--json"], env=run_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        killed = _kill(proc, case.kill_after, store, case, project, landed, wait_held=case.kill_state is not None)
        if not killed:
            landed.append(["after the batch ended"])
        if case.kill_state and not killed:
            problems.append(f"the batch ended before children were held in {case.kill_state}")
        elif case.kill_state and case.kill_state != SOME_ENDED and not _held(store, case, project):
            problems.append(f"never held in {case.kill_state} within {REACH_TIMEOUT_S}s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        release.touch()
    for after in case.resume_kills:
        resume = subprocess.Popen([sys.executable, "-m", "mcp_adapter", "resume", "--json"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        try:
            if not _kill(resume, after, store, case, project, landed):
                landed.append(["after the batch ended"])
        finally:
            if resume.poll() is None:
                resume.kill()
                resume.wait(timeout=10)
    resumed = cli(env, "resume", "--json")
    if resumed.returncode != 0:
        problems.append(f"resume exited {resumed.returncode}: {resumed.stderr[-300:]}")
    return problems


def _terminal_moves(store: Store, machine_id: str, terminal: frozenset[str]) -> list[str]:
    return [e.dst for e in store.events(machine_id) if e.dst in terminal and e.src != e.dst]


def check_case(case: Case, project: Path, store: Store, env: dict[str, str]) -> list[str]:
    problems: list[str] = []
    directory = project / case.directory
    if leftovers := temp_files(directory):
        problems.append(f"temp files left: {leftovers}")
    batch = _batch(store, case)
    if batch is None:  # killed before the batch existed: nothing may have changed
        for n in range(CHILDREN):
            on_disk = (project / case.output(n)).read_bytes() if (project / case.output(n)).exists() else None
            if on_disk != (ORIGINAL if case.exists(n) else None):
                problems.append(f"{case.output(n)} changed although no batch was created")
        return problems
    if batch.state != "finished":
        return [*problems, f"batch {batch.id} is {batch.state} after resume"]
    batch_events = [e.event for e in store.events(batch.id)]
    if batch_events.count("start") != 1 or len(_terminal_moves(store, batch.id, BATCH.terminal)) != 1:
        problems.append(f"batch journal: {batch_events}")
    children = _children(store, batch)
    if len(children) != CHILDREN:
        problems.append(f"{len(children)} children")
    for n, child in enumerate(children):
        problems += [f"child {n + 1}: {p}" for p in _child_problems(case, n, child, project, store)]
    # The summary matches the journal.
    found = counts(children)
    if batch.data.get("counts") != found:
        problems.append(f"batch counts {batch.data.get('counts')} != children {found}")
    shown = cli(env, "run", batch.id, "--json")
    if shown.returncode != 0:
        problems.append(f"run {batch.id} exited {shown.returncode}: {shown.stderr[-300:]}")
    else:
        view = json.loads(shown.stdout)
        if view.get("counts") != found or view.get("children") != [child_line(c) for c in children] \
                or view.get("state") != batch.state or view.get("total") != CHILDREN:
            problems.append(f"summary {view.get('counts')} {view.get('children')} != journal {found}")
    records = read_log(Project.resolve(project).delegation_log).records
    lines = [r for r in records if r.get("event") == "batch" and r.get("batch_id") == batch.id]
    if len(lines) != 1 or lines[0].get("counts") != found or lines[0].get("state") != batch.state:
        problems.append(f"batch log lines {[(r.get('state'), r.get('counts')) for r in lines]} != {found}")
    return problems


def _child_problems(case: Case, n: int, child: MachineRecord, project: Path, store: Store) -> list[str]:
    problems: list[str] = []
    data = RunData.from_json(child.data)
    if data.output_paths != [case.output(n)]:
        return [f"writes {data.output_paths}, not {case.output(n)}"]
    if child.state not in DELEGATION.terminal:
        return [f"still {child.state} after resume"]
    ends = _terminal_moves(store, child.id, DELEGATION.terminal)
    if len(ends) != 1:
        problems.append(f"{len(ends)} moves into an end state: {ends}")
    gave_up = "gave up after" in str(data.error or "") or "could not finish rolling back" in str(data.error or "")
    if child.state != case.expected(n) and not gave_up:
        problems.append(f"ended {child.state}, expected {case.expected(n)} ({data.error})")
    if data.conflicts or (project / ".claude" / "workflow" / "conflicts" / child.id).exists():
        problems.append(f"conflicts reported on files nobody else touched: {data.conflicts}")
    # The file holds the journaled content of the last applied write (done) or the base (failed).
    path = project / case.output(n)
    on_disk = path.read_bytes() if path.exists() else None
    base = ORIGINAL if case.exists(n) else None
    writes = store.file_writes(child.id)
    if child.state == "done":
        if len(writes) != 1 or not writes[0].applied:
            problems.append(f"done without an applied write: {writes}")
        elif on_disk is None or content_hash(on_disk) != writes[0].applied[-1] or on_disk != writes[0].content:
            problems.append(f"done but the file is not its last applied write: {on_disk!r:.80}")
        elif on_disk.decode() != case.answer(n, case.good_from[n]):
            problems.append(f"done but the file holds {on_disk!r:.80}")
    elif "could not finish rolling back" in str(data.error or ""):
        allowed = {base, *(w.content for w in writes)}
        if on_disk not in allowed:
            problems.append(f"rollback given up, the file holds neither the base nor a write: {on_disk!r:.80}")
    elif on_disk != base:
        problems.append(f"{child.state} but the file is not its base: {on_disk!r:.80}")
    if writes and writes[0].previous is not None and writes[0].previous != base:
        problems.append("the journaled base is not the file as it was")
    verified = subprocess.run(["sh", "-c", f"grep -q good {case.output(n)}"], cwd=project, capture_output=True,
                              check=False, timeout=30).returncode == 0
    if verified != (child.state == "done"):
        problems.append(f"state {child.state} but verify on the final content {'passes' if verified else 'fails'}")
    problems += journal_problems(store, child)
    problems += log_problems(project, child)
    return problems


def run(*, short: bool, seed: int, count: int | None = None) -> ScenarioResult:
    result = ScenarioResult("R8", f"kill -9 during a {CHILDREN}-child batch, then resume")
    cases = make_cases(count or (3 if short else 10), seed, chain=3 if short else 10)
    started = time.monotonic()
    landed: list[list[str]] = []
    recovered: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    with started_double() as double, tempfile.TemporaryDirectory(prefix="rel-r8-") as tmp:
        double.responder = _responder({c.index: c for c in cases})
        project = enabled_project(Path(tmp) / "project", double)
        env = cli_env(project, double)
        store = Store(Project.resolve(project).state_db)
        try:
            for case in cases:
                directory = project / case.directory
                (directory / "src").mkdir(parents=True)
                (directory / "tests").mkdir()
                for n in range(CHILDREN):
                    (directory / "src" / f"{case.stem(n)}.py").write_text(f"def f{n}() -> int:\n    return {n}\n")
                    if case.exists(n):
                        (project / case.output(n)).write_bytes(ORIGINAL)
                problems = _kill_and_resume(case, project, env, store, Path(tmp), landed)
                problems += check_case(case, project, store, env)
                result.record(problems, case.label())
                if (batch := _batch(store, case)) is not None:
                    for child in _children(store, batch):
                        recovered[child.state] += sum(e.event == "recover" for e in store.events(child.id))
                        ended[child.state] += 1
        finally:
            store.close()
    points = Counter(p for kill in landed for p in kill)
    kills = sum(1 for kill in landed if kill != ["after the batch ended"])
    result.notes.insert(0, f"kills {kills} of {len(landed)} tries, landed with: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(points.items())))
    result.notes.insert(1, "children ended " + ", ".join(f"{k} {v}" for k, v in sorted(ended.items()))
                        + "; recoveries of children " + str(sum(recovered.values())))
    result.figures = {"kills": kills, "kill_points": dict(sorted(points.items())), "landed": landed,
                      "children": CHILDREN * len(cases), "children_ended": dict(ended),
                      "child_recoveries": sum(recovered.values())}
    result.seconds = time.monotonic() - started
    return result
