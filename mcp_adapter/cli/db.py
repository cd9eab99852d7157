"""`local-llm db check | move-aside | forget ID | compact`: the project's database when something in it is damaged,
and its size.

Every other command reports a damaged database or row with the fix; these are the fixes. Nothing is deleted without
a copy (engine/store/repair.py). `compact` applies the retention policy (engine/delegation/retention.py,
docs/retention.md) now and rewrites the file.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import typer

from engine import Engine
from mcp_adapter.cli.common import JsonOption, ProjectOption, VerboseOption, execute
from mcp_adapter.cli.output import Result

__all__ = ["db_app", "register"]

db_app = typer.Typer(
    name="db", help="Check the project's database, move a damaged one aside, forget a row that cannot be read, "
    "drop old finished runs' prompts and file contents.",
    no_args_is_help=True,
)


def _check_text(r: dict[str, Any]) -> str:
    if r["ok"]:
        return f"{r['database']}: ok ({r.get('runs', 0)} runs; every page and row reads)"
    lines = [str(r["problem"])]
    lines += [f"  {row['kind']} {row['id']} ({row['state']}): {row['problem']}" for row in r["damaged_rows"]]
    lines += [f"  {page}" for page in r["pages"][1:10]]
    lines.append(f"fix: {r['fix']}")
    return "\n".join(lines)


def _moved_text(r: dict[str, Any]) -> str:
    return "\n".join([*(f"moved {m['from']} -> {m['to']}" for m in r["moved"]), r["next"]])


async def _check(engine: Engine) -> Result:
    report = engine.db_check()
    return Result(report, _check_text, exit_code=0 if report["ok"] else 1)


async def _move_aside(engine: Engine, *, force: bool) -> Result:
    return Result(engine.db_move_aside(force=force), _moved_text)


async def _forget(engine: Engine, *, machine_id: str) -> Result:
    r = engine.db_forget(machine_id)
    return Result(r, f"forgot {r['kind']} {r['id']} ({r['problem']}); a copy of the database is at {r['backup']}")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _compact_text(r: dict[str, Any]) -> str:
    policy = r["policy"]
    kept = "every finished run's bodies dropped" if r["everything"] else (
        f"bodies kept {policy['keep_days']:g} days" if policy["keep_days"] else "no bound by age") + (
        f", up to {policy['keep_mb']:g} MB" if policy["keep_mb"] else ", no bound by size")
    live = f"; {r['runs_in_live_batches']} in batches still running kept" if r["runs_in_live_batches"] else ""
    return (f"{r['database']}: {r['runs_compacted']} finished run(s) compacted ({kept}{live}); "
            f"{_mb(r['bytes_before'])} -> {_mb(r['bytes_after'])}")


async def _compact(engine: Engine, *, keep_days: float | None, keep_mb: float | None, everything: bool) -> Result:
    return Result(engine.db_compact(keep_days=keep_days, keep_mb=keep_mb, everything=everything), _compact_text)


@db_app.command()
def compact(
    ctx: typer.Context,
    *,
    keep_days: Annotated[float | None, typer.Option(
        "--keep-days", min=0, help="keep finished runs' bodies this many days (default $LOCAL_LLM_KEEP_DAYS, "
        "else 30; 0: no bound by age)")] = None,
    keep_mb: Annotated[float | None, typer.Option(
        "--keep-mb", min=0, help="drop the oldest bodies while state.db holds more than this many MB (default "
        "$LOCAL_LLM_KEEP_MB, else 100; 0: no bound by size)")] = None,
    everything: Annotated[bool, typer.Option(
        "--all", help="drop the bodies of every finished run, whatever their age")] = False,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Drop finished runs' prompts, answers and file contents past the retention policy, then shrink the file.
    Runs in flight are never touched; each run's journal, result, counts and the delegation log stay."""
    execute(ctx, partial(_compact, keep_days=keep_days, keep_mb=keep_mb, everything=everything), project=project,
            as_json=as_json, verbose=verbose)


@db_app.command()
def check(
    ctx: typer.Context, *, project: ProjectOption = None, as_json: JsonOption = False, verbose: VerboseOption = False
) -> None:
    """Read every page and every row; exit 1 when something is damaged, with what to do."""
    execute(ctx, _check, project=project, as_json=as_json, verbose=verbose)


@db_app.command("move-aside")
def move_aside(
    ctx: typer.Context,
    *,
    force: Annotated[bool, typer.Option(
        "--force", help="move it even if it is not damaged (its runs are then not resumed)")] = False,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Rename a damaged state.db (+ -wal, -shm) to state.db.damaged-<UTC time> and start afresh; the files are kept.
    Stop `local-llm serve` for this project first when the database is not damaged (--force)."""
    execute(ctx, partial(_move_aside, force=force), project=project, as_json=as_json, verbose=verbose)


@db_app.command()
def forget(
    ctx: typer.Context,
    machine_id: Annotated[str, typer.Argument(metavar="ID", help="the run (or `session`) whose row cannot be read")],
    *,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Remove one row that cannot be read, with its journal, after keeping a copy of the database."""
    execute(ctx, partial(_forget, machine_id=machine_id), project=project, as_json=as_json, verbose=verbose)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app)
