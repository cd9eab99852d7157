"""`runs`, `run ID`, `resume`, `cancel ID` and `diagram`: reading and steering persisted machines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from engine import Engine
from mcp_adapter.cli.output import Result, table

__all__ = ["register"]


def _run_text(view: dict[str, Any]) -> str:
    lines = [f"{view['run_id']}  {view['state']}  {view['task_type']}  {view['task']}"]
    if view.get("error"):
        lines.append(f"error: {view['error']}")
    for e in view.get("events", []):
        lines.append(f"  v{e['version']:<3} {e['event']:<18} {e['from'] or '-':>12} -> {e['to']}")
    return "\n".join(lines)


async def runs_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    rows = engine.list_runs(limit=args.limit)
    return Result(rows, lambda r: table(r, ["run_id", "state", "task_type", "attempts", "task"]))


async def run_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    return Result(engine.run_view(args.run_id), _run_text)


async def resume_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    report = await engine.resume()
    def text(r: dict[str, Any]) -> str:
        if not (r["resumed"] or r["aborted"] or r["errors"] or r["skipped"]):
            return "no interrupted runs"
        lines = [f"resumed {len(r['resumed'])}, aborted {len(r['aborted'])}, skipped {len(r['skipped'])} (owned by a live process)"]
        lines += [f"  {i}: {msg}" for i, msg in r["errors"].items()]
        return "\n".join(lines)
    return Result(report, text, exit_code=1 if report["errors"] else 0)


async def cancel_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    view = await engine.cancel(args.run_id)
    return Result(view, lambda v: f"{v['run_id']}: {v['state']}")


async def diagram_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    text = engine.diagram(args.machine, run_id=args.run, fmt=args.format)
    if args.output:
        Path(args.output).write_text(text)
        return Result({"written": str(args.output), "format": args.format}, f"wrote {args.output}")
    return Result(text, text)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("runs", parents=[common], help="list delegation runs, newest first")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(handler=runs_cmd)

    p = sub.add_parser("run", parents=[common], help="one run with its journal")
    p.add_argument("run_id")
    p.set_defaults(handler=run_cmd)

    p = sub.add_parser("resume", parents=[common], help="resume runs interrupted by a crash")
    p.set_defaults(handler=resume_cmd, background=True)

    p = sub.add_parser("cancel", parents=[common], help="cancel a run and roll its files back")
    p.add_argument("run_id")
    p.set_defaults(handler=cancel_cmd)

    p = sub.add_parser("diagram", parents=[common], help="render a state machine (and a run's path through it)")
    p.add_argument("machine", choices=["session", "delegation"])
    p.add_argument("--run", metavar="ID", help="highlight this machine's current state and journaled path")
    p.add_argument("--format", choices=["mermaid", "dot", "svg"], default="mermaid")
    p.add_argument("-o", "--output", metavar="FILE")
    p.set_defaults(handler=diagram_cmd)
