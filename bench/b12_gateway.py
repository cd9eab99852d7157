"""B12: batches and retries behind a gateway (issue 20), with real processes on 127.0.0.1 (bench/gateway.py): the
embedded GGUF in `python -m llama_cpp.server` (`--n_ctx 4096`, one thread each) behind a LiteLLM proxy.

(a) A batch's wall time over two servers against the same batch over one (the same proxy config with one deployment
    instead of two). The engine is given no setting: the slots (1 or 2) and num_ctx come from the proxy's
    `/v1/model/info`. Same prompts, seeds and temperature on both sides, so both generate the same tokens.
(b) Attempt 2's prompt time against attempt 1's, as B5 measures it (a delegation whose verify fails once, a context
    file of a few hundred tokens; prompt time = request start -> first generated piece, on the client's clock), with
    per-run routing (LiteLLM's `session_affinity` pins the run's `X-Local-LLM-Session-Id`) and without it (the same
    proxy without the check: least-busy picks either idle server, so about half the retries land on the server that
    never saw the prompt and evaluate it whole).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio

from bench.b3_delegation import env
from bench.b5_prompt_reuse import VERIFY, _context_file
from bench.common import Figure, median, scratch_dir
from bench.gateway import MASTER_KEY, MODEL_GROUP, gateway

__all__ = ["run"]

WALL_TARGET = 0.75
"""Two servers should take at most 3/4 of one's time (ideal 1/2; the proxy, the engine and 2 CPU cores share)."""
REUSE_TARGET = 0.5
"""B5's target for attempt 2's prompt time, which per-run routing should keep behind a gateway."""


def _batch_spec(children: int) -> dict[str, Any]:
    return {"runs": [{"task": f"Write mod{i}.py with a function value() that returns {i}. Keep it to two lines.",
                      "output_files": [{"path": f"mod{i}.py", "description": f"value() returns {i}"}]}
                     for i in range(children)], "max_attempts": 1}


async def _wall(project: Path, children: int) -> tuple[float, dict[str, Any]]:
    from engine import Engine

    engine = Engine.open(project)
    try:
        status = await engine.enable(llm=MODEL_GROUP, backend="openai")
        began = time.perf_counter()
        summary = await engine.batch(_batch_spec(children), wait=1800)
        wall = time.perf_counter() - began
        await engine.disable()
        return wall, {"slots": status["slots"], "num_ctx": status["num_ctx"], "counts": summary.get("counts")}
    finally:
        engine.close()


async def _retry(project: Path, results: list[Any]) -> dict[str, Any]:
    from engine import Engine

    engine = Engine.open(project)
    try:
        await engine.enable(llm=MODEL_GROUP, backend="openai")
        (project / ".bench-second-attempt").unlink(missing_ok=True)
        results.clear()
        view = await engine.delegate(
            task="Write calc.py with a function add(a, b) that returns a + b; keep it short.",
            context_files=["helpers.py"], output_files=[{"path": "calc.py", "description": "add(a, b)"}],
            verify=VERIFY, max_attempts=2, wait=1800,
        )
        await engine.disable()
        return view
    finally:
        engine.close()


def _retries(root: Path, *, affinity: bool, rounds: int) -> tuple[list[float], list[float]]:
    from engine.executor.backends.openai import OpenAIBackend

    results: list[Any] = []
    original = OpenAIBackend.generate

    async def recording(self: OpenAIBackend, request: Any, *, on_token: Any = None) -> Any:
        result = await original(self, request, on_token=on_token)
        results.append(result)
        return result

    first: list[float] = []
    second: list[float] = []
    OpenAIBackend.generate = recording  # type: ignore[method-assign]
    try:
        with gateway(2, root / ("affinity" if affinity else "shuffle"), affinity=affinity) as gw, \
                env(LOCAL_LLM_OPENAI_URL=f"{gw.url}/v1", LOCAL_LLM_OPENAI_API_KEY=MASTER_KEY):
            for n in range(rounds):
                project = root / f"retry-{'a' if affinity else 's'}{n}"
                project.mkdir()
                (project / "helpers.py").write_text(_context_file(20))
                view = anyio.run(_retry, project, results)
                if len(results) < 2:
                    raise RuntimeError(f"expected two attempts, got {len(results)} ({view['state']}: "
                                       f"{view.get('error')})")
                first.append(float(results[0].prompt_seconds or 0.0))
                second.append(float(results[1].prompt_seconds or 0.0))
    finally:
        OpenAIBackend.generate = original  # type: ignore[method-assign]
    return first, second


def run(quick: bool) -> list[Figure]:
    children = 4 if quick else 8
    rounds = 2 if quick else 6
    with scratch_dir("b12") as root:
        walls: dict[int, tuple[float, dict[str, Any]]] = {}
        for servers in (1, 2):
            project = root / f"batch-{servers}"
            project.mkdir()
            with gateway(servers, root / f"servers-{servers}") as gw, \
                    env(LOCAL_LLM_OPENAI_URL=f"{gw.url}/v1", LOCAL_LLM_OPENAI_API_KEY=MASTER_KEY):
                walls[servers] = anyio.run(_wall, project, children)
        pinned = _retries(root, affinity=True, rounds=rounds)
        loose = _retries(root, affinity=False, rounds=rounds)
    (one, one_info), (two, two_info) = walls[1], walls[2]

    def ms(values: list[float]) -> float:
        return median(values) * 1e3

    def each(pair: tuple[list[float], list[float]]) -> str:
        return ", ".join(f"{a * 1e3:.0f}/{b * 1e3:.0f}" for a, b in zip(*pair, strict=True))

    return [
        Figure("B12", f"batch of {children} behind LiteLLM: two llama.cpp servers vs one (wall)", two, one, "s",
               WALL_TARGET, note=f"slots from the gateway {two_info['slots']} vs {one_info['slots']}, num_ctx "
                                 f"{two_info['num_ctx']}; children {two_info['counts']} vs {one_info['counts']}"),
        Figure("B12", f"retry behind LiteLLM with per-run routing: attempt 2 vs 1 prompt time (median of {rounds})",
               ms(pinned[1]), ms(pinned[0]), "ms", REUSE_TARGET,
               note=f"attempt 1/2 ms each run: {each(pinned)}"),
        Figure("B12", f"retry behind LiteLLM without per-run routing: attempt 2 vs 1 (median of {rounds})",
               ms(loose[1]), ms(loose[0]), "ms", float("inf"), target_text="reported (the loss routing avoids)",
               note=f"attempt 1/2 ms each run: {each(loose)}"),
    ]
