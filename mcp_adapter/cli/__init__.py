"""The `local-llm` command: the same engine as the MCP server, one subcommand per action."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import anyio

from engine import Engine, UserError
from engine.logs import configure_logging
from engine.project import Project
from mcp_adapter.cli import delegation, lifecycle, runs, serve
from mcp_adapter.cli.output import Result, emit

__all__ = ["main"]


def _common() -> argparse.ArgumentParser:
    # SUPPRESS keeps a subcommand's default from overwriting a value given before the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--project", metavar="DIR", default=argparse.SUPPRESS,
                        help="project directory (default: $LOCAL_LLM_PROJECT or the current directory)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug lines to stderr")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="local-llm",
        parents=[common],
        description="Delegate mechanical coding tasks to a local model (Ollama, an OpenAI-compatible server, "
        "or the embedded llama.cpp default), with persisted, resumable state machines.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (lifecycle, delegation, runs, serve):
        module.register(sub, common)
    return parser


async def _run(args: argparse.Namespace) -> Result:
    engine = Engine(Project.resolve(getattr(args, "project", None)))
    try:
        if getattr(args, "background", False):
            async with engine.background():
                return await args.handler(engine, args)
        return await args.handler(engine, args)
    finally:
        engine.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    as_json = getattr(args, "json", False)
    try:
        project = Project.resolve(getattr(args, "project", None))
        configure_logging(log_file=project.engine_log, verbose=getattr(args, "verbose", False))
        result = anyio.run(_run, args)
    except UserError as exc:
        sys.stderr.write(f"local-llm {args.command}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    emit(result, as_json=as_json)
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
