"""B8: what the orchestrator pays to read the tool: tokens of the tool's schema, of a passed delegate result and of
a failed one, through the real MCP server in-process (`mcp.Client(build_server(engine))`), answered by a scripted
backend so the figures do not depend on a model.

Tokens are counted one way for every figure here and in B7: `ceil(characters / 4)` of the JSON the client receives
(compact separators), the rule of thumb for English and code with Claude's tokenizer, which has no public local
implementation. The baseline, measured in the same run from the same run records, is the result as the previous
version answered it: the whole task echoed, the verify output's 4,000-character tail, and the failed run's error
repeating that output. Targets (issue #12): a passed result <= 300 tokens, a failed one <= 600, and never larger than
the baseline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import anyio

from bench.common import Figure, scratch_dir

__all__ = ["json_tokens", "run"]

PASSED_BUDGET = 300
FAILED_BUDGET = 600
TASK = ("Add a docstring to every public function in src/orders.py and src/payments.py, in the Google style the "
        "other modules use; keep the code unchanged. Write tests for the two refund helpers in tests/test_refunds.py "
        "covering the partial-refund and the zero-amount cases.")
FAILURE = "".join(
    f"tests/test_refunds.py::test_case_{i} FAILED\n    assert refund(order_{i}, 0) == Decimal('0.00')\n"
    f"E   AssertionError: assert Decimal('1.{i:02d}') == Decimal('0.00')\n" for i in range(60)
) + "=========== 60 failed in 0.42s ===========\n"


def json_tokens(value: Any) -> int:
    return math.ceil(len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) / 4)


def _previous_form(result: dict[str, Any], task: str, output: str) -> dict[str, Any]:
    """The same result as the previous version built it (engine/delegation/views.py before issue #12)."""
    old = {**result, "task": task}
    old["files"] = [{k: f[k] for k in ("path", "status", "existed", "bytes")} for f in result["files"]]
    if result["verification"].get("passed") is False:
        old["verification"] = {**result["verification"], "output_tail": output[-4000:]}
        if result["state"] == "failed":
            old["error"] = f"verification failed on all {result['attempts']} attempt(s); files rolled back. " \
                           f"Last output:\n{output[-4000:]}"
    return old


async def _measure(project: Path) -> dict[str, Any]:
    from mcp import Client

    from engine import Engine, Project
    from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
    from mcp_adapter.server import build_server

    (project / "src").mkdir()
    for name in ("orders.py", "payments.py"):
        (project / "src" / name).write_text("def total(order):\n    return sum(order.lines)\n" * 40)
    (project / "fail.txt").write_text(FAILURE)
    engine = Engine(Project.resolve(project))
    outputs = [{"path": "src/orders.py", "description": "docstrings added"},
               {"path": "src/payments.py", "description": "docstrings added"},
               {"path": "tests/test_refunds.py", "description": "two refund tests"}]
    answer = files_answer({o["path"]: ('"""Docstring."""\n' + "def total(order):\n    return sum(order.lines)\n" * 40)
                           for o in outputs})
    use_backend(engine, ScriptedBackend().reply(*([answer] * 4)))
    async with engine.background(), Client(build_server(engine)) as client:
        tools = await client.list_tools()
        [tool] = [t for t in tools.tools if t.name == "local_llm"]
        schema = tool.model_dump(mode="json", by_alias=True, exclude_none=True)
        # The scripted answers are whole files (the JSON form); the result's size does not depend on the form.
        common = {"action": "delegate", "task": TASK, "output_files": outputs, "answer_form": "json"}
        passed = await client.call_tool("local_llm", {**common, "verify": "true"})
        failed = await client.call_tool("local_llm", {**common, "verify": "cat fail.txt; exit 1", "max_attempts": 3})
    engine.close()
    return {"schema": schema, "passed": passed.structured_content, "failed": failed.structured_content}


def run(quick: bool) -> list[Figure]:
    with scratch_dir("b8") as project:
        measured = anyio.run(_measure, project)
    passed, failed = measured["passed"], measured["failed"]
    assert passed["state"] == "done" and failed["state"] == "failed", (passed["state"], failed["state"])
    schema = json_tokens(measured["schema"])
    figures = []
    for name, result, budget in (("passed", passed, PASSED_BUDGET), ("failed", failed, FAILED_BUDGET)):
        tokens, before = json_tokens(result), json_tokens(_previous_form(result, TASK, FAILURE))
        figures.append(Figure(
            "B8", f"{name} delegate result, tokens (3 files)", tokens, before, "tokens", 1.0,
            extra_ok=tokens <= budget, target_text=f"<= 1.0 and <= {budget} tokens",
            note=f"{name}: {tokens} tokens now, {before} in the previous form; the tool's schema is {schema} tokens",
        ))
    return figures
