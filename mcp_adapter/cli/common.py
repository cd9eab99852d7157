"""What every command shares: the global options (before or after the command), the engine's lifetime, exit codes."""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import typer

from engine import DatabaseDamaged, Engine, Project, UserError
from engine.logs import configure_logging
from mcp_adapter.cli.exit_codes import INTERRUPTED, REFUSED, signalled
from mcp_adapter.cli.output import Result, emit

__all__ = ["Globals", "Handler", "JsonOption", "ProjectOption", "VerboseOption", "execute"]

Handler = Callable[[Engine], Awaitable[Result]]
"""A command's body: gets the project's engine, returns what to print and the exit code."""

# Declared again on every command (not only on the app's callback) because click parses a group's options only
# before the subcommand; `local-llm status --json --project X` must work as it did with argparse's parents.
ProjectOption = Annotated[
    str | None,
    typer.Option("--project", metavar="DIR", show_default=False,
                 help="project directory (default: $LOCAL_LLM_PROJECT or the current directory)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="log debug lines to stderr")]


@dataclass(frozen=True)
class Globals:
    project: str | None = None
    as_json: bool = False
    verbose: bool = False

    def merged(self, *, project: str | None, as_json: bool, verbose: bool) -> Globals:
        """The command's own options win over the ones given before it, as argparse's SUPPRESS defaults did."""
        return Globals(project=project if project is not None else self.project,
                       as_json=as_json or self.as_json, verbose=verbose or self.verbose)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
"""What ends a command that drives runs (`delegate`, `resume`) the way `serve` ends: its work is cancelled (a verify
command's process group is killed), its runs keep their persisted state for `local-llm resume`."""


class _Stopped(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


async def _on_signals(signals: AsyncIterator[int], scope: anyio.CancelScope, received: list[int]) -> None:
    async for signum in signals:
        received.append(signum)
        scope.cancel()


async def _handle(engine: Engine, handler: Handler, background: bool) -> Result:
    if background:
        async with engine.background():
            return await handler(engine)
    return await handler(engine)


async def _run(project: Project, handler: Handler, background: bool, stop_on_signals: bool) -> Result:
    engine = Engine(project)
    try:
        if not stop_on_signals:
            return await _handle(engine, handler, background)
        received: list[int] = []
        outcome: dict[str, Any] = {}
        # The receiver stays installed until the work has ended, its clean-up included: a second signal while the
        # first one's cancel is being delivered would otherwise meet the default action and end the process before
        # the verify command's process group is killed (that group lives in its own session and would be left).
        with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
            async with anyio.create_task_group() as tg:
                work = anyio.CancelScope()
                tg.start_soon(_on_signals, signals, work, received)
                with work:
                    try:
                        outcome["result"] = await _handle(engine, handler, background)
                    except Exception as exc:  # kept out of the group: a UserError must leave as itself
                        outcome["error"] = exc
                tg.cancel_scope.cancel()
        if received:
            # Stopping already: a further signal while the process winds down would only turn the exit code into a
            # death by signal (its work, verify groups included, has ended).
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            raise _Stopped(received[0])
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]  # type: ignore[no-any-return]
    finally:
        engine.close()


def _offer_move_aside(root: Project) -> None:
    """On a terminal, the fix of a damaged database is one keypress away (`local-llm db move-aside`, files kept)."""
    if not typer.confirm("Move it aside now (it is kept) and start afresh?", default=False, err=True):
        return
    engine = Engine(root)
    try:
        moved = engine.db_move_aside()
    except UserError as exc:
        sys.stderr.write(f"not moved: {exc}\n")
        return
    finally:
        engine.close()
    for m in moved["moved"]:
        sys.stderr.write(f"moved {m['from']} -> {m['to']}\n")
    sys.stderr.write("run the command again: it starts with a fresh database\n")


def execute(
    ctx: typer.Context, handler: Handler, *, project: str | None, as_json: bool, verbose: bool,
    background: bool = False, stop_on_signals: bool = False,
) -> None:
    """Run `handler` against the project's engine, print its result, and leave with the command's exit code.

    `background`: the handler starts engine tasks that must finish before the engine closes (resume).
    `stop_on_signals`: SIGTERM, SIGHUP and SIGINT cancel the handler (see STOP_SIGNALS); exit code 128 + the signal.
    A UserError exits REFUSED (3) with its message on stderr (mcp_adapter/cli/exit_codes.py has the table).
    """
    parent = ctx.obj if isinstance(ctx.obj, Globals) else Globals()
    options = parent.merged(project=project, as_json=as_json, verbose=verbose)
    try:
        root = Project.resolve(options.project)
        configure_logging(log_file=root.engine_log, verbose=options.verbose)
        result = anyio.run(_run, root, handler, background, stop_on_signals)
    except _Stopped as stopped:
        sys.stderr.write(f"{ctx.command_path}: stopped by {stopped}; runs in flight keep their state, "
                         "`local-llm resume` continues them\n")
        raise typer.Exit(signalled(stopped.signum)) from None
    except UserError as exc:
        # Refused, not a crash: one line naming the command, no traceback, nothing on stdout. Its own exit code:
        # 2 stays click's usage error (the command line itself is wrong).
        sys.stderr.write(f"{ctx.command_path}: {exc}\n")
        if isinstance(exc, DatabaseDamaged) and not options.as_json and not ctx.command_path.startswith(
                "local-llm db") and sys.stdin.isatty() and sys.stderr.isatty():
            _offer_move_aside(root)
        raise typer.Exit(REFUSED) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise typer.Exit(INTERRUPTED) from None
    emit(result, as_json=options.as_json)
    if result.exit_code:
        raise typer.Exit(result.exit_code)
