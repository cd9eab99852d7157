"""`local-llm demo`: an end-to-end delegation on the embedded default, in a scratch project (kept, to inspect)."""

from __future__ import annotations

import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from engine import Engine, Project
from mcp_adapter.cli.common import JsonOption, ProjectOption, VerboseOption, execute
from mcp_adapter.cli.delegation import result_text
from mcp_adapter.cli.output import Result, progress_bar

__all__ = ["DEMO_TASK", "register"]

DEMO_TASK = "Write a short Markdown reference for the functions in calc.py: one section per function"
DEMO_CONTEXT = "calc.py"
DEMO_SOURCE = '''def add(a: float, b: float) -> float:
    return a + b


def mean(values: list[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)
'''
DEMO_OUTPUT = "docs/calc.md"
# A check the pipeline can pass with a tiny model: the file exists and is not empty. The demo shows the pipeline
# (pack context -> generate -> journal -> atomic write -> verify), not the model's cleverness.
DEMO_VERIFY = f"test -s {DEMO_OUTPUT} && echo \"{DEMO_OUTPUT}: $(wc -w < {DEMO_OUTPUT}) words\""

DemoBackend = Literal["embedded", "ollama", "openai"]


def _demo_text(r: dict[str, Any]) -> str:
    lines = [f"demo project: {r['project']}", f"task: {DEMO_TASK} (context: {DEMO_CONTEXT})", result_text(r)]
    lines.append(f"verify command: {DEMO_VERIFY}")
    lines.append(f"verify output: {((r.get('verification') or {}).get('output_tail') or '').strip()}")
    lines.append("run path: " + ", ".join(r["path"]))
    if r["preview"]:
        shown = r["preview"].splitlines()[:12]
        lines += [f"--- {DEMO_OUTPUT} (first {len(shown)} lines) ---", *shown, "---"]
    prog = sys.argv[0] if sys.argv[0].endswith("local-llm") else "local-llm"
    lines.append(f"inspect: {prog} --project {r['project']} run {r['run_id']}")
    return "\n".join(lines)


async def _demo(engine: Engine, *, directory: str | None, backend: str) -> Result:
    # `engine` is the --project one; the demo runs in its own scratch project so it never touches the user's files.
    scratch = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="local-llm-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    source = scratch / DEMO_CONTEXT
    if not source.exists():
        source.write_text(DEMO_SOURCE, encoding="utf-8")
    demo = Engine(Project.resolve(scratch))
    try:
        with progress_bar() as progress:
            await demo.enable(llm=True, backend=backend, progress=progress)
            result = await demo.delegate(
                task=DEMO_TASK, task_type="docs", context_files=[DEMO_CONTEXT],
                output_files=[{"path": DEMO_OUTPUT, "description": "Markdown: a heading and a sentence per function"}],
                verify=DEMO_VERIFY, max_attempts=3, progress=progress,
            )
        path = [f"{e['from']} -{e['event']}-> {e['to']}" for e in demo.run_view(result["run_id"])["events"]
                if e["from"] and e["from"] != e["to"]]
    finally:
        demo.close()
    written = scratch / DEMO_OUTPUT
    preview = written.read_text(encoding="utf-8", errors="replace") if written.exists() else ""
    result = {**result, "project": str(scratch), "path": path, "preview": preview}
    return Result(result, _demo_text, exit_code=0 if result["state"] == "done" else 1)


def demo(
    ctx: typer.Context,
    *,
    directory: Annotated[str | None, typer.Option(
        "--dir", metavar="DIR", show_default=False,
        help="scratch project directory (default: a new temporary one)")] = None,
    backend: Annotated[DemoBackend, typer.Option("--backend", help="backend to run the demo on")] = "embedded",
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """End-to-end delegation on the embedded default, in a scratch project."""
    handler = partial(_demo, directory=directory, backend=backend)
    execute(ctx, handler, project=project, as_json=as_json, verbose=verbose)


def register(app: typer.Typer) -> None:
    app.command()(demo)
