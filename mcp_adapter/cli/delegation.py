"""CLI commands of the delegation pipeline: analyze, delegate, stats, demo."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine import TASK_TYPES, Engine, InvalidArgument, Project
from mcp_adapter.cli.output import Result, end_progress_line, terminal_progress

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


def _analysis_text(a: dict[str, Any]) -> str:
    lines = [f"{a['recommendation']} (score {a['score']:.2f}, threshold {a['threshold']}, base {a['base']})"]
    lines += [f"  {r['weight']:+.2f}  {r['signal']}: {r['detail']}" for r in a["reasons"]]
    return "\n".join(lines)


def _result_text(r: dict[str, Any]) -> str:
    lines = [f"run {r['run_id']}: {r['state']} after {r['attempts']} attempt(s)"]
    for f in r.get("files", []):
        lines.append(f"  {f['status']:<12} {f['path']} ({f['bytes']} bytes)")
    for s in r.get("files_skipped", []):
        lines.append(f"  skipped      {s['path']}: {s['reason']}")
    v = r.get("verification") or {}
    if v.get("passed") is not None:
        lines.append(f"verify: {'passed' if v['passed'] else 'failed'}")
        if v.get("output_tail") and not v["passed"]:
            lines += ["  " + line for line in v["output_tail"].rstrip().splitlines()[-20:]]
    lines.append(
        f"tokens: {r.get('tokens_generated', 0)} generated, {r.get('prompt_tokens', 0)} prompt; "
        f"time: {r.get('time_seconds') or 0:.1f} s; model: {r.get('model') or '-'}"
    )
    if r.get("error") and r["state"] != "done":
        lines.append(f"error: {r['error'].splitlines()[0]}")
    return "\n".join(lines)


def _stats_text(s: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0%}"

    lines = [
        f"analyzed: {s['analyzed']} (recommended delegate: {pct(s['delegation_rate'])})",
        f"delegated: {s['delegated']} (done {s['done']}, failed {s['failed']}, cancelled {s['cancelled']})",
        f"verification pass rate: {pct(s['verification_pass_rate'])}; first attempt: {pct(s['first_attempt_pass_rate'])}",
        f"tokens generated: {s['tokens_generated']}; time: {s['time_seconds']:.1f} s",
        f"orchestrator tokens saved (estimate): {s['orchestrator_tokens_saved_estimate']}",
    ]
    for title, key in (("by task type", "by_task_type"), ("by model", "by_model")):
        for name, g in s[key].items():
            lines.append(f"  {title} {name}: {g['runs']} runs, {g['done']} done, pass {pct(g['verification_pass_rate'])}")
    if s["corrupt_lines"]:
        lines.append(f"skipped {s['corrupt_lines']} corrupt log line(s)")
    return "\n".join(lines)


def _output_spec(text: str) -> dict[str, str]:
    path, _, description = text.partition("=")
    if not path:
        raise InvalidArgument("--output", "PATH or PATH=DESCRIPTION", text)
    return {"path": path, "description": description}


async def analyze_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    result = engine.analyze(task=args.task, files=args.file, output_files=args.output_file, task_type=args.type)
    return Result(result, _analysis_text)


async def delegate_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    progress = terminal_progress()
    try:
        result = await engine.delegate(
            progress=progress, task=args.task, task_type=args.type, context_files=args.context,
            output_files=[_output_spec(o) for o in args.output], verify=args.verify,
            max_attempts=args.max_attempts, model=args.model, allow_secrets=args.allow_secrets,
            verify_timeout=args.verify_timeout,
        )
    finally:
        end_progress_line()
    return Result(result, _result_text, exit_code=0 if result["state"] == "done" else 1)


async def stats_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    return Result(engine.stats(), _stats_text)


async def demo_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    """An end-to-end delegation on the embedded default, in a scratch project (kept, so it can be inspected)."""
    scratch = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="local-llm-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    source = scratch / DEMO_CONTEXT
    if not source.exists():
        source.write_text(DEMO_SOURCE, encoding="utf-8")
    demo = Engine(Project.resolve(scratch))
    progress = terminal_progress()
    try:
        await demo.enable(llm=True, backend=args.backend, progress=progress)
        result = await demo.delegate(
            progress=progress, task=DEMO_TASK, task_type="docs", context_files=[DEMO_CONTEXT],
            output_files=[{"path": DEMO_OUTPUT, "description": "Markdown: a heading and a sentence per function"}],
            verify=DEMO_VERIFY, max_attempts=3,
        )
        path = [f"{e['from']} -{e['event']}-> {e['to']}" for e in demo.run_view(result["run_id"])["events"]
                if e["from"] and e["from"] != e["to"]]
    finally:
        end_progress_line()
        demo.close()
    written = scratch / DEMO_OUTPUT
    preview = written.read_text(encoding="utf-8", errors="replace") if written.exists() else ""
    result = {**result, "project": str(scratch), "path": path, "preview": preview}

    def text(r: dict[str, Any]) -> str:
        lines = [f"demo project: {r['project']}", f"task: {DEMO_TASK} (context: {DEMO_CONTEXT})", _result_text(r)]
        lines.append(f"verify command: {DEMO_VERIFY}")
        lines.append(f"verify output: {((r.get('verification') or {}).get('output_tail') or '').strip()}")
        lines.append("run path: " + ", ".join(r["path"]))
        if r["preview"]:
            shown = r["preview"].splitlines()[:12]
            lines += [f"--- {DEMO_OUTPUT} (first {len(shown)} lines) ---", *shown, "---"]
        prog = sys.argv[0] if sys.argv[0].endswith("local-llm") else "local-llm"
        lines.append(f"inspect: {prog} --project {r['project']} run {r['run_id']}")
        return "\n".join(lines)

    return Result(result, text, exit_code=0 if result["state"] == "done" else 1)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("analyze", parents=[common], help="score a task for delegation (threshold 0.6)")
    p.add_argument("task")
    p.add_argument("--file", action="append", default=[], metavar="F", help="a file the task is about (repeatable)")
    p.add_argument("--output-file", action="append", default=[], metavar="P", help="a file it would write")
    p.add_argument("--type", choices=TASK_TYPES, default=None, help="task type")
    p.set_defaults(handler=analyze_cmd)

    p = sub.add_parser("delegate", parents=[common], help="delegate a task to the local model, write and verify")
    p.add_argument("task")
    p.add_argument("--type", choices=TASK_TYPES, default="generate")
    p.add_argument("--context", action="append", default=[], metavar="F", help="context file (repeatable)")
    p.add_argument("--output", action="append", required=True, metavar="P[=DESCRIPTION]",
                   help="file to write, with an optional description (repeatable)")
    p.add_argument("--verify", metavar="CMD", help="shell command run in the project root; exit 0 = passed")
    p.add_argument("--max-attempts", type=int, default=3, metavar="N")
    p.add_argument("--verify-timeout", type=float, default=300.0, metavar="S")
    p.add_argument("--model", default=None, help="model to use (default: the session's)")
    p.add_argument("--allow-secrets", action="store_true", help="send context files that look like secrets")
    p.set_defaults(handler=delegate_cmd)

    p = sub.add_parser("stats", parents=[common], help="aggregate the delegation log")
    p.set_defaults(handler=stats_cmd)

    p = sub.add_parser("demo", parents=[common], help="end-to-end delegation on the embedded default, in a scratch project")
    p.add_argument("--dir", metavar="DIR", help="scratch project directory (default: a new temporary one)")
    p.add_argument("--backend", default="embedded", choices=["embedded", "ollama", "openai"])
    p.set_defaults(handler=demo_cmd)
