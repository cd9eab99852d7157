"""R5's kill -9 part: `local-llm delegate` held in a state, edited while held, killed with SIGKILL, edited again while
no process works on the files, then `local-llm resume`; the resumed run must never overwrite the editor's bytes and
must report what it could not write or restore.

Each case has three outputs (`a.txt` exists, `b.txt` is new, `n/c.txt` is new in a new directory); the Ollama double
answers by the case's marker and the attempt, bad before attempt `good_from`, good from then on; verify greps the
three files. Kill points: `pending`, `delegating` (before the prompt is packed), `generating` (packed, the model
answering: the double holds the answer until the kill), `writing` and `rolling_back` (after the first file),
`verifying`, `retrying`. Both processes run the real CLI under the instrument (`python -m bench.reliability.r5_trace`),
appending to one trace file per case; the editor's edits are traced here, and the two are merged by the monotonic
clock (no edit happens while a process touches the files: it is held, waiting for the model, or dead).
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
import threading
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
    cli_env,
    enabled_project,
    started_double,
    temp_files,
)
from bench.reliability.r5_classify import classify, final_hashes
from bench.reliability.r5_editor import Editor
from bench.reliability.r5_runs import Figures, run_end, view_problems
from bench.reliability.r5_trace import Event, Tracer, read_trace
from engine.project import Project
from engine.store.db import MachineRecord, Store
from engine.store.journal import content_hash

__all__ = ["KILL_POINTS", "KillCase", "make_cases", "run_part"]

KILL_POINTS = ("pending", "delegating", "generating", "writing", "verifying", "retrying", "rolling_back")
MARKER = re.compile(r"\[r5 kill (\d+)\]")
ORIGINAL_A = b"original a\r\n\xe2\x9c\x93 no newline"
REACH_TIMEOUT_S = 30.0
RESUME_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class KillCase:
    index: int
    point: str
    max_attempts: int
    good_from: int
    held_edits: int
    dead_edits: int

    @property
    def directory(self) -> str:
        return f"r5/k{self.index:03d}"

    @property
    def outputs(self) -> tuple[str, str, str]:
        return f"{self.directory}/a.txt", f"{self.directory}/b.txt", f"{self.directory}/n/c.txt"

    def answer(self, attempt: int) -> dict[str, str]:
        word = "good" if attempt >= self.good_from else "bad"
        return {p: f"{word} {p} of kill case {self.index}, attempt {attempt}\n" for p in self.outputs}

    def verify(self) -> str:
        return "sleep 0.05; " + " && ".join(f"grep -q good {p}" for p in self.outputs)

    def label(self) -> str:
        return (f"kill case {self.index} (killed in {self.point}, good from attempt {self.good_from}/"
                f"{self.max_attempts}, {self.held_edits} edits held, {self.dead_edits} after the kill)")


def _script(point: str, rng: random.Random) -> tuple[int, int]:
    """(good_from, max_attempts) with which a run passes through `point`."""
    if point == "retrying":
        return 2, rng.choice((2, 3))
    if point == "rolling_back":
        return rng.choice((2, 3)), 1
    return rng.choice((1, 1, 2, 4)), rng.choice((1, 2, 3))


def make_cases(count: int, seed: int) -> list[KillCase]:
    """The first cases take each kill point once; then seeded points."""
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        point = KILL_POINTS[index] if index < len(KILL_POINTS) else rng.choice(KILL_POINTS)
        good_from, max_attempts = _script(point, rng)
        cases.append(KillCase(index, point, max_attempts, good_from, rng.randint(0, 2), rng.randint(1, 3)))
    return cases


class _Double:
    """The double's answers, by marker and attempt; a `generating` case's answer waits until its kill."""

    def __init__(self, cases: Mapping[int, KillCase]) -> None:
        self.cases = cases
        self.asked: dict[int, threading.Event] = {c.index: threading.Event() for c in cases.values()}
        self.released: dict[int, threading.Event] = {c.index: threading.Event() for c in cases.values()}

    def respond(self, body: Mapping[str, Any]) -> str:
        match = MARKER.search(json.dumps(body.get("messages")))
        if match is None:
            return answer_for({})
        case = self.cases[int(match.group(1))]
        self.asked[case.index].set()
        if case.point == "generating":
            self.released[case.index].wait(timeout=REACH_TIMEOUT_S)  # the first process is killed meanwhile
        return answer_for(case.answer(int((body.get("options") or {}).get("seed") or 1)))


def _find(store: Store, case: KillCase) -> MachineRecord | None:
    tag = f"[r5 kill {case.index}]"
    return next((r for r in store.machines(kind="delegation") if tag in str(r.data.get("task", ""))), None)


def _held(trace: Path, case: KillCase, double: _Double) -> bool:
    if case.point == "generating":
        return double.asked[case.index].is_set()  # packed (bases journaled), the model answering
    return any(e.kind == "pause" and e.label == case.point for e in read_trace(trace))


def _traced_cli(trace: Path, project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench.reliability.r5_trace", str(trace), str(project), *args]


def _hold(case: KillCase, proc: subprocess.Popen[bytes], trace: Path, double: _Double) -> list[str]:
    """Wait (bounded, polling the trace: another process writes it) until the run is held at its kill point."""
    deadline = time.monotonic() + REACH_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        if _held(trace, case, double):
            return []
        time.sleep(0.02)
    return [f"never reached {case.point} (process exit code {proc.poll()})"]


def _edits(editor: Editor, case: KillCase, rng: random.Random, count: int, during: str) -> None:
    for _ in range(count):
        editor.edit(rng.choice(case.outputs), rng, label=f"kill case {case.index}", during=during)


def _kill_and_resume(case: KillCase, project: Path, env: dict[str, str], work: Path, double: _Double,
                     editor: Editor, rng: random.Random) -> tuple[list[str], list[str]]:
    """Returns the problems and the stderr texts of both processes."""
    trace, release = work / f"trace-{case.index}.jsonl", work / f"release-{case.index}"
    held_env = dict(env)
    if case.point != "generating":
        held_env.update({"LOCAL_LLM_TEST_PAUSE_IN": case.point, "LOCAL_LLM_TEST_PAUSE_FILE": str(release)})
    task = f"rewrite the three files [r5 kill {case.index}]"
    outputs = [arg for p in case.outputs for arg in ("--output", p)]
    with open(work / f"delegate-{case.index}.err", "w+b") as err:
        proc = subprocess.Popen(_traced_cli(trace, project, "delegate", task, *outputs, "--verify", case.verify(),
                                            "--max-attempts", str(case.max_attempts), "--json"),
                                env=held_env, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO)
        try:
            problems = _hold(case, proc, trace, double)
            _edits(editor, case, rng, case.held_edits, f"held in {case.point}")
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)  # reaped: a zombie would still look like a live owner
            double.released[case.index].set()
            release.touch()
        err.seek(0)
        stderr = [err.read().decode(errors="replace")]
    _edits(editor, case, rng, case.dead_edits, f"after the kill in {case.point}")
    resumed = subprocess.run(_traced_cli(trace, project, "resume", "--json"), env=env, capture_output=True,
                             text=True, timeout=RESUME_TIMEOUT_S, cwd=REPO, check=False)
    if resumed.returncode != 0:
        problems.append(f"resume exited {resumed.returncode}: {resumed.stderr[-300:]}")
    return problems, [*stderr, resumed.stderr]


def _one(case: KillCase, project: Path, env: dict[str, str], store: Store, work: Path, double: _Double,
         rng: random.Random, figures: Figures) -> list[str]:
    directory = project / case.directory
    directory.mkdir(parents=True)
    (directory / "a.txt").write_bytes(ORIGINAL_A)
    tracer = Tracer(project)  # this process's events: the setup and the editor's edits
    tracer.record("setup", case.outputs[0], hash=content_hash(ORIGINAL_A))
    editor = Editor(tracer, project, {case.outputs[0]: ORIGINAL_A}, tag=f"kill case {case.index}")
    problems, stderr = _kill_and_resume(case, project, env, work, double, editor, rng)
    # Python's own (a crash) or the engine's one-line form of a logged exception (engine/logs.py).
    figures.tracebacks += sum(text.count("Traceback (most recent call last)") + text.count("(traceback in engine.log")
                              for text in stderr)
    figures.abandoned += editor.abandoned
    record = _find(store, case)
    if record is None:
        return [*problems, "no run was created"]
    events: list[Event] = sorted([*tracer.events, *read_trace(work / f"trace-{case.index}.jsonl")],
                                 key=lambda e: e.order)
    verdicts = classify(events, {record.id: run_end(store, record.id)}, final_hashes(project, list(case.outputs)))
    figures.add(verdicts)
    figures.ended[store.get(record.id).state] += 1
    problems += view_problems(store, project, record.id)
    problems += [p for key in (record.id, "") for p in verdicts.problems.get(key, [])]
    if leftovers := temp_files(directory):
        problems.append(f"temp files left: {leftovers}")
    return problems


def _logged_tracebacks(project: Path) -> int:
    log = Project.resolve(project).engine_log
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text(errors="replace").splitlines() if '"exception"' in line)


def run_part(*, count: int, seed: int, result: ScenarioResult) -> tuple[Figures, str]:
    """Run the kill -9 cases; their figures, and where the kills landed."""
    figures = Figures()
    cases = make_cases(count, seed)
    rng = random.Random(seed + 1)
    double = _Double({c.index: c for c in cases})
    with started_double() as ollama, tempfile.TemporaryDirectory(prefix="rel-r5k-") as tmp:
        ollama.responder = double.respond
        project = enabled_project(Path(tmp) / "project", ollama)
        env = cli_env(project, ollama)
        store = Store(Project.resolve(project).state_db)
        try:
            for case in cases:
                problems = _one(case, project, env, store, Path(tmp), double, rng, figures)
                result.record(problems, case.label())
        finally:
            store.close()
        figures.tracebacks += _logged_tracebacks(project)
    landed = Counter(c.point for c in cases)
    return figures, ", ".join(f"{k} {v}" for k, v in sorted(landed.items()))
