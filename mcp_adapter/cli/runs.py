"""`runs`, `run ID`, `resume`, `cancel ID` and `diagram`: reading and steering persisted machines."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from engine import Engine
from mcp_adapter.cli.common import JsonOption, ProjectOption, VerboseOption, execute
from mcp_adapter.cli.output import Result, progress_bar, table

__all__ = ["RUN_COLUMNS", "register"]

RUN_COLUMNS = ("run_id", "state", "task_type", "attempts", "task")

Machine = Literal["session", "delegation", "batch"]
DiagramFormat = Literal["mermaid", "dot", "svg"]


def _run_text(view: dict[str, Any]) -> str:
    lines = [f"{view['run_id']}  {view['state']}  {view['task_type']}  {view['task']}"]
    if view.get("error"):
        lines.append(f"error: {view['error']}")
    for e in view.get("events", []):
        lines.append(f"  v{e['version']:<3} {e['event']:<18} {e['from'] or '-':>12} -> {e['to']}")
    return "\n".join(lines)


def _resume_text(r: dict[str, Any]) -> str:
    if not (r["resumed"] or r["aborted"] or r["errors"] or r["skipped"] or r.get("batches")):
        return "no interrupted runs"
    lines = [(f"resumed {len(r['resumed'])}, aborted {len(r['aborted'])}, skipped {len(r['skipped'])} "
              "(owned by a live process)")]
    lines += [f"resumed batch {b}" for b in r.get("batches", [])]
    lines += [f"  {i}: {msg}" for i, msg in r["errors"].items()]
    return "\n".join(lines)


async def _runs(engine: Engine, *, limit: int) -> Result:
    return Result(engine.list_runs(limit=limit), lambda rows: table(rows, RUN_COLUMNS))


async def _run(engine: Engine, *, run_id: str, diff: bool) -> Result:
    if diff:
        result = await engine.result(run_id, diff=True)
        text = "".join(f.get("diff", "") for f in result["files"]) or "no changes\n"
        return Result(result, text.rstrip("\n"))
    return Result(engine.run_view(run_id), _run_text)


async def _resume(engine: Engine) -> Result:
    with progress_bar() as progress:
        report = await engine.resume(progress=progress)
    return Result(report, _resume_text, exit_code=1 if report["errors"] else 0)


async def _cancel(engine: Engine, *, run_id: str) -> Result:
    view = await engine.cancel(run_id)
    return Result(view, lambda v: f"{v.get('run_id') or v.get('batch_id')}: {v['state']}")


async def _diagram(engine: Engine, *, machine: str, run: str | None, fmt: str, output: Path | None) -> Result:
    text = engine.diagram(machine, run_id=run, fmt=fmt)
    if output is not None:
        output.write_text(text)
        return Result({"written": str(output), "format": fmt}, f"wrote {output}")
    return Result(text, text)


def runs(
    ctx: typer.Context,
    *,
    limit: Annotated[int, typer.Option("--limit", metavar="N", help="how many runs to list")] = 50,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """List delegation runs, newest first."""
    execute(ctx, partial(_runs, limit=limit), project=project, as_json=as_json, verbose=verbose)


def run(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="the run's id (see `local-llm runs`)")],
    *,
    diff: Annotated[bool, typer.Option("--diff", help="the unified diff of each file instead of the journal")] = False,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """One run with its journal (or, with --diff, what it changed)."""
    execute(ctx, partial(_run, run_id=run_id, diff=diff), project=project, as_json=as_json, verbose=verbose)


def resume(
    ctx: typer.Context, *, project: ProjectOption = None, as_json: JsonOption = False, verbose: VerboseOption = False
) -> None:
    """Resume runs interrupted by a crash."""
    execute(ctx, _resume, project=project, as_json=as_json, verbose=verbose, background=True, stop_on_signals=True)


def cancel(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="the run to cancel")],
    *,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Cancel a run and roll its files back."""
    execute(ctx, partial(_cancel, run_id=run_id), project=project, as_json=as_json, verbose=verbose)


def diagram(
    ctx: typer.Context,
    machine: Annotated[Machine, typer.Argument(metavar="MACHINE",
                                               help="which state machine: session, delegation or batch")],
    *,
    run: Annotated[str | None, typer.Option(
        "--run", metavar="ID", show_default=False,
        help="highlight this machine's current state and journaled path")] = None,
    fmt: Annotated[DiagramFormat, typer.Option("--format", help="output format")] = "mermaid",
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", show_default=False, help="write to FILE instead of stdout")] = None,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Render a state machine (and a run's path through it)."""
    handler = partial(_diagram, machine=machine, run=run, fmt=fmt, output=output)
    execute(ctx, handler, project=project, as_json=as_json, verbose=verbose)


def register(app: typer.Typer) -> None:
    for command in (runs, run, resume, cancel, diagram):
        app.command()(command)
