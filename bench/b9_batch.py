"""B9: a batch of 20 children (test files for 20 modules, a template over a glob) against a scripted backend with 4
parallel slots and a fixed latency per generation (`ScriptedBackend(parallelism=4, latency=LATENCY_S)`), in-process.

(a) wall time of `Engine.batch(...)` against the ideal, 20 / 4 x latency: at most 1.15 x.
(b) each child's engine overhead: its own time (its record's start to end) less the generation's latency, the median
    over the children, within B3's bound (<= 5 % of the run and <= 50 ms).
(c) a `delegate` started mid-batch (all 4 slots busy) waits at most one child's generation for a slot: the time from
    the call to its generation starting, against the latency.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio

from bench.common import Figure, median, scratch_dir

__all__ = ["CHILDREN", "LATENCY_S", "SLOTS", "run"]

CHILDREN, SLOTS = 20, 4
LATENCY_S = 0.5
MAX_RATIO = 1.15
MAX_PCT, MAX_MS = 5.0, 50.0


def _project(root: Path) -> None:
    (root / "src").mkdir(parents=True, exist_ok=True)
    for i in range(CHILDREN):
        (root / "src" / f"mod{i:02d}.py").write_text(f"def value_{i}() -> int:\n    return {i}\n")


async def _measure(root: Path, latency: float) -> dict[str, Any]:
    from engine import Engine, Project
    from engine.executor.backends.base import GenerateRequest, GenerateResult, TokenCallback
    from engine.testing.scripted import ScriptedBackend, use_backend

    starts: dict[str, float] = {}

    class Timed(ScriptedBackend):
        async def generate(self, request: GenerateRequest, *, on_token: TokenCallback | None = None
                           ) -> GenerateResult:
            if "single.py" in request.messages[1].content:
                starts.setdefault("delegate", time.perf_counter())
            return await super().generate(request, on_token=on_token)

    engine = Engine(Project.resolve(root))
    backend = Timed(parallelism=SLOTS, latency=latency)
    use_backend(engine, backend)
    spec = {"template": {"task": "Write pytest tests for {path}", "task_type": "test",
                         "output": "tests/test_{stem}.py"}, "glob": "src/*.py"}
    try:
        began = time.perf_counter()
        summary = await engine.batch(spec)
        wall = time.perf_counter() - began
        children = [engine.store.get(f"{summary['batch_id']}.{n}") for n in range(1, CHILDREN + 1)]
        child_times = [c.updated_at - c.data["started_at"] for c in children]
        # (c): a second batch fills the slots; a delegate joins once all four generate.
        async with engine.background():
            second = await engine.batch({**spec, "template": {**spec["template"], "output": "more/test_{stem}.py"}},
                                        wait=0)
            with anyio.fail_after(60):
                await backend.wait_active(SLOTS)
                called = time.perf_counter()
                single = await engine.delegate(task="Write single.py", output_files=["single.py"])
                await engine.result(second["batch_id"], wait=60)
        waited = starts["delegate"] - called
    finally:
        engine.close()
    return {"summary": summary, "wall": wall, "child_times": child_times, "waited": waited,
            "single": single["state"], "max_active": backend.max_active}


def run(quick: bool) -> list[Figure]:
    latency = LATENCY_S
    with scratch_dir("b9") as project:
        _project(project)
        m = anyio.run(_measure, project, latency)
    summary = m["summary"]
    assert summary["counts"] == {"done": CHILDREN} and m["single"] == "done", (summary["counts"], m["single"])
    ideal = CHILDREN / SLOTS * latency
    overhead = median(m["child_times"]) - latency
    return [
        Figure("B9", f"batch of {CHILDREN}, {SLOTS} slots, {latency:g} s a generation: wall vs 20/4 x latency",
               m["wall"] * 1000, ideal * 1000, "ms", MAX_RATIO,
               note=f"{m['max_active']} generations at once at most; summary {summary['total']} children"),
        Figure("B9", "a child's engine overhead (median child time vs latency)", median(m["child_times"]) * 1000,
               latency * 1000, "ms", 1 + MAX_PCT / 100, extra_ok=overhead * 1000 <= MAX_MS,
               target_text=f"overhead <= {MAX_PCT:g} % and <= {MAX_MS:g} ms",
               note=f"median overhead {overhead * 1000:.1f} ms a child"),
        Figure("B9", "a delegate started mid-batch: wait for a slot vs one generation", m["waited"] * 1000,
               latency * 1000, "ms", 1.0, target_text="<= one generation",
               note=f"waited {m['waited'] * 1000:.0f} ms with all {SLOTS} slots busy"),
    ]
