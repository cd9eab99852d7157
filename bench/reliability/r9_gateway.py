"""R9: a batch behind a gateway, one of its two backends killed mid-way (issue 20).

Real processes, all on 127.0.0.1 (bench/gateway.py): two `python -m llama_cpp.server` with the embedded GGUF
(`--n_ctx 4096`) behind a LiteLLM proxy (least-busy routing, session affinity, `num_retries: 2`). The engine enables
on the proxy with no setting at all (context and slots come from the proxy's `/v1/model/info`), starts a batch, and
SIGKILLs one server while children generate. Per child:

- it ends, once: a terminal state, one terminal move in its journal, one line in the delegation log;
- the dead backend cost it nothing: it did not fail on a backend error, and every generation the kill broke was sent
  again (`backend_retry`) without using one of its attempts;
- the batch finished with every child run to its end (no failure limit is set: every child runs), none excused.

The tiny model's answers may fail to parse: that is the child's content, not a loss.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio

from bench.b3_delegation import env
from bench.common import scratch_dir
from bench.gateway import MASTER_KEY, MODEL_GROUP, gateway
from bench.reliability.common import ScenarioResult

__all__ = ["run"]

TERMINAL = ("done", "failed", "cancelled")
BACKEND_WORDS = ("backend error", "does not answer", "no OpenAI-compatible server")


def _spec(children: int) -> dict[str, Any]:
    return {"runs": [{"task": f"Write mod{i}.py with a function value() that returns {i}. Keep it to two lines.",
                      "output_files": [{"path": f"mod{i}.py", "description": f"value() returns {i}"}]}
                     for i in range(children)],
            "max_attempts": 2}


async def _batch(project: Path, children: int, kill: Any) -> dict[str, Any]:
    from engine import Engine

    engine = Engine.open(project)
    try:
        status = await engine.enable(llm=MODEL_GROUP, backend="openai")
        async with engine.background():
            started = await engine.batch(_spec(children), wait=0)
            batch_id = started["batch_id"]
            ids = [f"{batch_id}.{n}" for n in range(1, children + 1)]
            with anyio.fail_after(600):
                # The kill lands while children generate: once one has ended and others are in flight.
                while not (any(engine.store.get(i).state in TERMINAL for i in ids)
                           and any(engine.store.get(i).state == "delegating" for i in ids)):
                    await anyio.sleep(0.2)
                await anyio.sleep(1.0)  # well into a generation's stream
                kill()
                summary = await engine.result(batch_id, wait=560)
        records = [engine.store.get(i) for i in ids]
        events = {i: [e.event for e in engine.store.events(i)] for i in ids}
        batch = engine.store.get(batch_id)
        log_text = engine.project.delegation_log.read_text()
        await engine.disable()
        return {"status": status, "summary": summary, "records": records, "events": events, "batch": batch,
                "log": log_text}
    finally:
        engine.close()


def _problems(outcome: dict[str, Any]) -> list[list[str]]:
    per_child = []
    excused = outcome["batch"].data.get("children_excused") or []
    for record in outcome["records"]:
        problems = []
        if record.state not in ("done", "failed"):  # no limit, no cancel: every child runs to its own end
            problems.append(f"{record.id} did not run to its end ({record.state})")
        # The log line is appended in the transaction of the move that ends the run: one line, one end.
        lines = sum(json.loads(line).get("run_id") == record.id for line in outcome["log"].splitlines() if line)
        if lines != 1:
            problems.append(f"{record.id}: {lines} delegation-log lines")
        error = str(record.data.get("error") or "")
        if record.state == "failed" and any(w in error for w in BACKEND_WORDS):
            problems.append(f"{record.id} failed on the backend: {error[:160]}")
        if record.id in excused:
            problems.append(f"{record.id} was excused (failed because of the backend)")
        per_child.append(problems)
    return per_child


def run(*, short: bool, seed: int) -> ScenarioResult:
    del seed  # the kill's instant is set by the children's progress, not drawn
    result = ScenarioResult("R9", "batch behind LiteLLM, one of two backends killed mid-way")
    began = time.monotonic()
    children = 4 if short else 8
    with scratch_dir("r9") as root:
        project = root / "project"
        project.mkdir()
        with gateway(2, root / "servers") as gw, env(LOCAL_LLM_OPENAI_URL=f"{gw.url}/v1",
                                                      LOCAL_LLM_OPENAI_API_KEY=MASTER_KEY):
            outcome = anyio.run(_batch, project, children, lambda: gw.kill(0))
    for problems in _problems(outcome):
        result.record(problems, "child")
    status = outcome["status"]
    retries = sum(e.count("backend_retry") for e in outcome["events"].values())
    attempts = [int(r.data.get("attempt") or 0) for r in outcome["records"]]
    counts = outcome["summary"].get("counts")
    result.notes.append(f"enable: num_ctx {status['num_ctx']} ({status.get('num_ctx_from')}), slots "
                        f"{status['slots']} ({status['slots_from']}); children {counts}; generations sent again "
                        f"after the kill: {retries}; attempts used {attempts}")
    result.figures = {"counts": counts, "backend_retries": retries, "attempts": attempts,
                      "num_ctx": status["num_ctx"], "slots": status["slots"], "batch_state": outcome["batch"].state}
    result.seconds = time.monotonic() - began
    return result
