"""The `local-llm` typer app: one command per engine action. `serve` is routed around it by mcp_adapter/entry.py."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from mcp_adapter.cli import db, delegation, demo, integration, lifecycle, runs
from mcp_adapter.cli import eval as evaluation
from mcp_adapter.cli.common import Globals, JsonOption, ProjectOption, VerboseOption
from mcp_adapter.cli.exit_codes import EPILOG

__all__ = ["app", "main"]

app = typer.Typer(
    name="local-llm",
    help="Delegate mechanical coding tasks to a local model (Ollama, an OpenAI-compatible server, "
    "or the embedded llama.cpp default), with persisted, resumable state machines.",
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
    # Shell completion would add two options to every --help; the CLI is mostly driven by scripts and Claude Code.
    add_completion=False,
    # A crash prints Python's own traceback: it ends up in bug reports and CI logs, where a boxed one 80 columns
    # wide wraps badly (and typer's would show locals, which can hold task text and file contents).
    pretty_exceptions_enable=False,
)


@app.callback()
def _globals(
    ctx: typer.Context, *, project: ProjectOption = None, as_json: JsonOption = False, verbose: VerboseOption = False
) -> None:
    # Kept for the command, which merges them with its own copies of the same options.
    ctx.obj = Globals(project=project, as_json=as_json, verbose=verbose)


for module in (lifecycle, delegation, runs, db, demo, evaluation, integration):
    module.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (click ends with SystemExit even on success)."""
    try:
        app(args=None if argv is None else list(argv), prog_name="local-llm")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
