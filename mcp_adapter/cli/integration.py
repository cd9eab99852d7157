"""How Claude Code reaches the tool: `serve` (the MCP server) and `install-command` (the /workflow:implement command,
the `local-llm` skill and the `local-llm-worker` subagent, each naming the tool `mcp__<server name>__local_llm`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from engine import Engine
from mcp_adapter.cli.claude_code import (
    COMMAND_PATH,
    DEFAULT_SERVER_NAME,
    SKILL_PATH,
    check_server_name,
    install,
    planned_files,
    tool_name,
)
from mcp_adapter.cli.common import Globals, JsonOption, ProjectOption, VerboseOption, execute
from mcp_adapter.cli.output import Result
from mcp_adapter.cli.serve import run_serve

__all__ = ["COMMAND_PATH", "SKILL_PATH", "register"]


def _installed_text(r: dict[str, Any]) -> str:
    lines = [f"{f['status']:<10} {f['path']}" for f in r["files"]]
    lines.append(f"all name the tool {r['tool']} (the server `claude mcp add` registered as {r['server_name']})")
    lines.append(f"in Claude Code: {r['use']}, or let Claude pick the `local-llm` skill for mechanical work")
    return "\n".join(lines)


async def _install_command(engine: Engine, *, user: bool, server_name: str, force: bool) -> Result:
    # Checked here, inside the handler, so that a bad name is a UserError: exit 2, one line on stderr.
    name = check_server_name(server_name)
    base = Path.home() if user else engine.project.root
    files = install(base, planned_files(name), force=force, confine=not user)
    data = {"files": files, "server_name": name, "tool": tool_name(name), "use": "/workflow:implement llm=true TASK"}
    return Result(data, _installed_text)


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
    user: Annotated[bool, typer.Option(
        "--user", help="into ~/.claude/ (every project) instead of the project")] = False,
    server_name: Annotated[str, typer.Option(
        "--server-name", metavar="NAME",
        help="the name you gave `claude mcp add` (the tool is mcp__NAME__local_llm)")] = DEFAULT_SERVER_NAME,
    force: Annotated[bool, typer.Option(
        "--force", help="replace files that are there with other content (your edits are lost)")] = False,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Install the /workflow:implement slash command, the local-llm skill and its subagent for Claude Code."""
    handler = partial(_install_command, user=user, server_name=server_name, force=force)
    execute(ctx, handler, project=project, as_json=as_json, verbose=verbose)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command("install-command")(install_command)
