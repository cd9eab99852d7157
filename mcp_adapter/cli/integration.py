"""How Claude Code reaches the tool: `serve` (the MCP server) and `install-command` (the /workflow:implement command)."""

from __future__ import annotations

import importlib.resources
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from engine import Engine
from mcp_adapter.cli.common import Globals, JsonOption, ProjectOption, VerboseOption, execute
from mcp_adapter.cli.output import Result
from mcp_adapter.cli.serve import run_serve

__all__ = ["COMMAND_PATH", "register"]

COMMAND_PATH = Path(".claude") / "commands" / "workflow" / "implement.md"


async def _install_command(engine: Engine, *, user: bool) -> Result:
    base = Path.home() if user else engine.project.root
    target = base / COMMAND_PATH
    text = importlib.resources.files("mcp_adapter").joinpath("resources/implement.md").read_text(encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    existed = target.exists()
    target.write_text(text, encoding="utf-8")
    data = {"installed": str(target), "replaced": existed, "use": "/workflow:implement llm=true TASK"}
    return Result(data, f"{'updated' if existed else 'installed'} {target}\n"
                        "in Claude Code: /workflow:implement llm=true TASK")


def serve(
    ctx: typer.Context, *, project: ProjectOption = None, as_json: JsonOption = False, verbose: VerboseOption = False
) -> None:
    """MCP server on stdio (for Claude Code and other MCP clients)."""
    # mcp_adapter/entry.py sends `serve` straight to run_serve without this library; this command is reached only
    # for its --help, or when someone calls the typer app directly. --json is accepted and means nothing here.
    parent = ctx.obj if isinstance(ctx.obj, Globals) else Globals()
    options = parent.merged(project=project, as_json=as_json, verbose=verbose)
    raise typer.Exit(run_serve(project=options.project, verbose=options.verbose))


def install_command(
    ctx: typer.Context,
    *,
    user: Annotated[bool, typer.Option("--user", help="into ~/.claude/commands instead of the project")] = False,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Install the /workflow:implement slash command for Claude Code."""
    execute(ctx, partial(_install_command, user=user), project=project, as_json=as_json, verbose=verbose)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command("install-command")(install_command)
