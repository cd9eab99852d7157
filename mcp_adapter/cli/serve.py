"""`serve` (the MCP server on stdio) and `install-command` (the /workflow:implement slash command for Claude Code)."""

from __future__ import annotations

import argparse
import importlib.resources
from pathlib import Path

from engine import Engine
from mcp_adapter.cli.output import Result

__all__ = ["register"]

COMMAND_PATH = Path(".claude") / "commands" / "workflow" / "implement.md"


async def serve_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    from mcp_adapter.server import serve

    await serve(engine)
    return Result(None, exit_code=0, quiet=True)


async def install_command_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    base = Path.home() if args.user else engine.project.root
    target = base / COMMAND_PATH
    text = importlib.resources.files("mcp_adapter").joinpath("resources/implement.md").read_text(encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    existed = target.exists()
    target.write_text(text, encoding="utf-8")
    data = {"installed": str(target), "replaced": existed, "use": "/workflow:implement llm=true TASK"}
    return Result(data, f"{'updated' if existed else 'installed'} {target}\nin Claude Code: /workflow:implement llm=true TASK")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="MCP server on stdio (for Claude Code and other MCP clients)")
    p.set_defaults(handler=serve_cmd)
    p = sub.add_parser("install-command", parents=[common],
                       help="install the /workflow:implement slash command for Claude Code")
    p.add_argument("--user", action="store_true", help="into ~/.claude/commands instead of the project")
    p.set_defaults(handler=install_command_cmd)
