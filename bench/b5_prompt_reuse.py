"""B5: retry prompt reuse. Prompt-processing time of attempt 2 vs attempt 1 of a real delegation on the embedded
llama.cpp backend (in-process), whose verify command fails once.

The runner keeps the first messages byte-identical across attempts (the packed prompt is stored in the run), and
llama.cpp keeps the previous evaluation in its KV cache, so attempt 2 should evaluate only what is new: the first
answer and the verify output. A context file of a few hundred tokens (num_ctx 2048, so the CPU run stays short)
makes the prompt a large part of the cost, as it is in real delegations. Prompt time is the backend's
`prompt_seconds` (request start -> first generated piece), recorded by wrapping `EmbeddedBackend.generate`; for
reference, attempt 2's request is sent once more with the KV cache emptied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from bench.b3_delegation import env
from bench.common import Figure, median, scratch_dir

__all__ = ["run"]

TARGET = 0.5
NUM_CTX = 2048
"""Keeps the answer room at 512 tokens: the tiny model tends to fill it, and on 2 CPU cores each token counts."""
VERIFY = ('test -e .bench-second-attempt || { touch .bench-second-attempt; '
          'echo "AssertionError: add(None, 1) must raise TypeError"; exit 1; }')


def _context_file(lines: int) -> str:
    body = [f"def helper_{i}(value):\n    \"\"\"Return value scaled by {i}.\"\"\"\n    return value * {i}\n"
            for i in range(lines)]
    return "\n".join(body)


async def _cold_second(requests: list[Any]) -> float:
    """Attempt 2's request again with the KV cache emptied first: what it would cost without reuse."""
    from engine.executor.backends import embedded

    with embedded._cache_lock:
        for _, llm in embedded._loaded.values():
            llm.reset()  # n_tokens = 0: the next prompt is evaluated from its first token
    result = await embedded.EmbeddedBackend().generate(requests[1])
    return float(result.prompt_seconds or 0.0)


async def _one(project: Path, results: list[Any], requests: list[Any]) -> tuple[dict[str, Any], float]:
    from engine import Engine

    engine = Engine.open(project)
    try:
        await engine.enable(llm=True, backend="embedded")
        marker = project / ".bench-second-attempt"
        marker.unlink(missing_ok=True)
        results.clear()
        requests.clear()
        view = await engine.delegate(
            task="Write calc.py with a function add(a, b) that returns a + b; keep it short.",
            context_files=["helpers.py"], output_files=[{"path": "calc.py", "description": "add(a, b)"}],
            verify=VERIFY, max_attempts=2,
        )
        cold = await _cold_second(requests) if len(requests) >= 2 else float("nan")
        await engine.disable()
        return view, cold
    finally:
        engine.close()


def run(quick: bool) -> list[Figure]:
    from engine.executor.backends.embedded import EmbeddedBackend

    rounds = 1 if quick else 3
    results: list[Any] = []
    requests: list[Any] = []
    original = EmbeddedBackend.generate

    async def recording(self: EmbeddedBackend, request: Any, *, on_token: Any = None) -> Any:
        requests.append(request)
        result = await original(self, request, on_token=on_token)
        results.append(result)
        return result

    first: list[float] = []
    cold: list[float] = []
    second: list[float] = []
    tokens: list[tuple[int, int]] = []
    EmbeddedBackend.generate = recording  # type: ignore[method-assign]
    try:
        with scratch_dir("b5") as project, env(LOCAL_LLM_NUM_CTX=str(NUM_CTX)):
            (project / "helpers.py").write_text(_context_file(10 if quick else 20))
            for _ in range(rounds):
                view, cold_s = anyio.run(_one, project, results, requests)
                cold.append(cold_s)
                if len(results) < 2:
                    raise RuntimeError(f"expected two attempts, got {len(results)} (run {view['state']}: "
                                       f"{view.get('error')})")
                first.append(results[0].prompt_seconds)
                second.append(results[1].prompt_seconds)
                tokens.append((results[0].prompt_tokens, results[1].prompt_tokens))
    finally:
        EmbeddedBackend.generate = original  # type: ignore[method-assign]
    return [Figure(
        "B5", f"prompt processing, attempt 2 vs attempt 1 (embedded llama.cpp, median of {rounds})",
        engine=median(second) * 1e3, baseline=median(first) * 1e3, unit="ms", target=TARGET,
        note=f"attempt 2 with the KV cache emptied: {median(cold) * 1e3:.0f} ms; prompt tokens (attempt 1/2): "
             + ", ".join(f"{a}/{b}" for a, b in tokens),
    )]
