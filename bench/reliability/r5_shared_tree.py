"""R5: a concurrent editor changes, creates and deletes output files while runs delegate, write, verify and roll back,
and between a SIGKILL and the resume. Nothing the editor wrote may be lost, every conflict must be reported.

Two parts, both traced by bench/reliability/r5_trace.py and judged by bench/reliability/r5_classify.py:

- in-process (this module): rounds of runs through the real engine (`Engine.delegate(wait=0)` inside
  `background()`), answered by a scripted backend that takes a while and answers pass / fail / garbage by attempt,
  with verify commands that take a while, max_attempts 1-3, 2-4 outputs per run from a pool shared by the round
  (existing files, new ones, new ones in new directories; runs that share a file follow each other), and some runs
  cancelled at a random moment. The editor (bench/reliability/r5_editor.py) edits from its own thread, aimed at the
  runs' states, and from hooks on the engine's thread at known points of the runs.
- kill -9 (bench/reliability/r5_kill.py): `local-llm delegate` in a subprocess held in a state, edited, killed,
  edited again, then `local-llm resume`.

Cases: each run of the in-process part, one per round for the tree at its end, and each kill -9 case; a case is lost
when any check fails (an edit lost, a conflict unreported, a view disagreeing, a failed run's bytes left behind, ...).
"""

from __future__ import annotations

import random
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog

from bench.reliability.common import ScenarioResult, temp_files
from bench.reliability.r5_classify import classify, final_hashes
from bench.reliability.r5_editor import Editor
from bench.reliability.r5_runs import Figures, run_end, view_problems
from bench.reliability.r5_trace import RUN, Tracer, installed
from engine import Engine, Project
from engine.errors import UserError
from engine.executor.backends.base import GenerateRequest, GenerateResult, TokenCallback
from engine.store.journal import content_hash
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend

__all__ = ["RunPlan", "counting_tracebacks", "make_plans", "pool_of", "run", "run_in_process"]

MARKER = re.compile(r"\[r5 run (\d+)\]")
ROUND_DEADLINE_S = 90.0


@dataclass(frozen=True)
class RunPlan:
    index: int
    outputs: tuple[str, ...]
    max_attempts: int
    answers: tuple[str, ...]
    """Per attempt: `pass` / `fail` (what the answer's first file says; verify greps it) or `garbled` (not JSON)."""
    verify_s: float | None
    """How long verify takes; None: no verify command (the run ends after writing)."""
    latency: float
    cancel_after: float | None

    @property
    def task(self) -> str:
        return f"rewrite {len(self.outputs)} files [r5 run {self.index}]"

    def reply(self, attempt: int) -> str:
        kind = self.answers[min(attempt, len(self.answers)) - 1]
        if kind == "garbled":
            return "Sure! Here are the files you asked for."
        return files_answer({p: f"run {self.index} attempt {attempt}: {p}\nverdict: {kind}\n" for p in self.outputs})

    def verify(self) -> str | None:
        if self.verify_s is None:
            return None
        return f"sleep {self.verify_s:.2f}; grep -q 'verdict: pass' {self.outputs[0]}"


def pool_of(number: int) -> dict[str, bytes | None]:
    """A round's output files and what they hold before the runs (None: absent)."""
    pool: dict[str, bytes | None] = {}
    for k in range(6):
        pool[f"src/mod{k}.py"] = f"# module {k} of round {number}\r\ndef f():\n    return '\u2713'".encode()
    for k in range(5):
        pool[f"src/new{k}.py"] = None
    for k in range(5):
        pool[f"gen{k}/deep/out{k}.txt"] = None
    return pool


def make_plans(number: int, rng: random.Random, pool: Sequence[str], count: int) -> list[RunPlan]:
    plans = []
    for n in range(count):
        max_attempts = rng.choice((1, 2, 3))
        answers = tuple(rng.choices(("pass", "fail", "garbled"), weights=(5, 4, 1))[0] for _ in range(max_attempts))
        plans.append(RunPlan(
            index=number * 100 + n, outputs=tuple(rng.sample(list(pool), rng.randint(2, 4))),
            max_attempts=max_attempts, answers=answers,
            verify_s=None if rng.random() < 0.15 else round(rng.uniform(0.02, 0.25), 2),
            latency=round(rng.uniform(0.02, 0.2), 3),
            cancel_after=round(rng.uniform(0.05, 1.0), 2) if rng.random() < 0.15 else None,
        ))
    return plans


@dataclass
class _Model(ScriptedBackend):
    """Answers each run by its plan and attempt (the request's seed), after the plan's latency; the editor may edit
    one of the run's outputs while it "generates" (its prompt is packed, its bases journaled)."""

    plans: dict[int, RunPlan] = field(default_factory=dict)
    tracer: Tracer | None = None

    async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None) -> GenerateResult:
        match = MARKER.search(" ".join(m.content for m in request.messages))
        assert match is not None, "every R5 task carries its marker"
        plan = self.plans[int(match.group(1))]
        if self.tracer is not None:
            self.tracer.aim("generating", RUN.get())
        await anyio.sleep(plan.latency)  # the model writing: not waiting for anything
        self.replies.append(plan.reply(int(request.seed or 1)))
        return await super().generate(request, on_token=on_token)


@contextmanager
def counting_tracebacks() -> Iterator[list[str]]:
    """Every structlog record with a traceback (`log.exception`) in this process while inside."""
    seen: list[str] = []
    processors = list(structlog.get_config()["processors"])

    def count(logger: Any, method: str, event: Any) -> Any:
        if method in ("exception", "critical") or event.get("exc_info"):
            seen.append(str(event.get("event")))
        return event

    structlog.configure(processors=[count, *processors])
    try:
        yield seen
    finally:
        structlog.configure(processors=processors)


async def _cancel_later(engine: Engine, run_id: str, delay: float) -> None:
    await anyio.sleep(delay)  # a random moment in the run's life
    try:
        await engine.cancel(run_id)
    except UserError:
        pass  # it ended first


async def _delegate_all(engine: Engine, plans: Sequence[RunPlan]) -> dict[int, str]:
    ids: dict[int, str] = {}
    with anyio.move_on_after(ROUND_DEADLINE_S):  # a run still going then is reported as not ended
        async with engine.background(), anyio.create_task_group() as tg:
            for plan in plans:
                view = await engine.delegate(task=plan.task, output_files=list(plan.outputs), verify=plan.verify(),
                                             max_attempts=plan.max_attempts, wait=0)
                ids[plan.index] = view["run_id"]
                if plan.cancel_after is not None:
                    tg.start_soon(_cancel_later, engine, view["run_id"], plan.cancel_after)
            for run_id in ids.values():
                await engine.result(run_id, wait=ROUND_DEADLINE_S)
    return ids


def _set_up(root: Path, pool: dict[str, bytes | None], tracer: Tracer) -> None:
    for path, content in pool.items():
        if content is not None:
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(content)
            tracer.record("setup", path, hash=content_hash(content))


async def _round(number: int, rng: random.Random, count: int, figures: Figures, result: ScenarioResult) -> None:
    with tempfile.TemporaryDirectory(prefix="rel-r5-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        pool = pool_of(number)
        tracer = Tracer(root)
        _set_up(root, pool, tracer)
        plans = make_plans(number, rng, list(pool), count)
        editor = Editor(tracer, root, pool, tag=f"round {number}")
        tracer.poke = editor.poker(random.Random(rng.random()))
        engine = Engine(Project.resolve(root))
        use_backend(engine, _Model(parallelism=2, plans={p.index: p for p in plans}, tracer=tracer))
        stop = threading.Event()
        roaming = threading.Thread(target=editor.roam, args=(random.Random(rng.random()), stop, list(pool)),
                                   name="r5-editor", daemon=True)
        try:
            with installed(tracer), counting_tracebacks() as tracebacks:
                roaming.start()
                started = time.monotonic()
                try:
                    ids = await _delegate_all(engine, plans)
                finally:
                    stop.set()
                    roaming.join(timeout=10)
                    figures.busy_s += time.monotonic() - started
            figures.tracebacks += len(tracebacks)
            figures.abandoned += editor.abandoned
            _judge_round(number, root, engine, tracer, plans, ids, figures, result)
        finally:
            engine.close()


def _judge_round(number: int, root: Path, engine: Engine, tracer: Tracer, plans: Sequence[RunPlan],
                 ids: dict[int, str], figures: Figures, result: ScenarioResult) -> None:
    ends = {run_id: run_end(engine.store, run_id) for run_id in ids.values()}
    verdicts = classify(tracer.events, ends, final_hashes(root, sorted({e.path for e in tracer.events if e.path})))
    figures.add(verdicts)
    figures.busy_window_ns += sum(verdicts.window_ns)  # the editor worked beside these runs (not so in kill -9)
    for plan in plans:
        run_id = ids.get(plan.index)
        if run_id is None:
            result.record(["never created (the round ran out of time)"], f"round {number} run {plan.index}")
            continue
        figures.ended[ends[run_id].state] += 1
        problems = [*view_problems(engine.store, root, run_id), *verdicts.problems.get(run_id, [])]
        result.record(problems, f"round {number} run {plan.index} ({ends[run_id].state})")
    tree = list(verdicts.problems.get("", []))
    if leftovers := temp_files(root):
        tree.append(f"temp files left: {leftovers}")
    result.record(tree, f"round {number}: the tree at the end")


def run_in_process(*, rounds: int, runs: int, seed: int, result: ScenarioResult) -> Figures:
    """The in-process part: `rounds` rounds of `runs` runs, each round in a project of its own."""
    figures = Figures()
    rng = random.Random(seed)
    for number in range(rounds):
        anyio.run(_round, number, rng, runs, figures, result)
    return figures


def run(*, short: bool, seed: int) -> ScenarioResult:
    from bench.reliability import r5_kill

    result = ScenarioResult("R5", "a concurrent editor in the tree: runs, and kill -9 then resume")
    started = time.monotonic()
    inside = run_in_process(rounds=3 if short else 12, runs=10 if short else 16, seed=seed, result=result)
    killed, landed = r5_kill.run_part(count=7 if short else 35, seed=seed, result=result)
    total = Figures()
    total.merge(inside)
    total.merge(killed)
    result.notes[:0] = [
        f"totals: {total.summary()}",
        f"in-process: {inside.summary()}",
        f"kill -9: {killed.summary()}; killed in: {landed}",
        total.by_state(),
        total.window(),
    ]
    result.figures = {"total": total.as_dict(), "in_process": inside.as_dict(), "kill9": killed.as_dict()}
    result.seconds = time.monotonic() - started
    return result
