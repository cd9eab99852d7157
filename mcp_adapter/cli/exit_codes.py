"""The exit codes of `local-llm`, one table for every command (docs/cli.md and `local-llm --help` show it).

Imports nothing: `serve` (mcp_adapter/cli/serve.py) uses it without the CLI libraries.
"""

from __future__ import annotations

__all__ = ["EPILOG", "FAILED", "INTERRUPTED", "OK", "REFUSED", "SIGNALLED", "TABLE", "USAGE", "signalled"]

OK = 0
FAILED = 1
"""The command ran and its work did not succeed (a run failed, enable failed, db check found damage, ...)."""
USAGE = 2
"""The command line is wrong; nothing ran. click and typer give every parse error this code, so it stays theirs."""
REFUSED = 3
"""The engine refused the request or cannot serve it (a UserError: a bad field, an unknown run, a damaged database).
Apart from USAGE so that a script can tell "called it wrong" from "it said no"."""
SIGNALLED = 128
INTERRUPTED = 130


def signalled(signum: int) -> int:
    """The shell's convention: 128 + the signal that stopped the command."""
    return SIGNALLED + signum


TABLE: tuple[tuple[str, str], ...] = (
    (str(OK), "done"),
    (str(FAILED), "it ran and did not succeed: a run failed or was cancelled, enable failed, db check found damage"),
    (str(USAGE), "usage: the command line is wrong (unknown option, missing argument, bad choice); nothing ran"),
    (str(REFUSED), "refused: the engine refused the request or cannot serve it; stderr names the problem and the fix"),
    ("128+N", "stopped by signal N (130: Ctrl-C); runs keep their state for `local-llm resume`"),
)

EPILOG = ("Exit codes: 0 done; 1 it ran and did not succeed (a run failed, enable failed); 2 usage error, nothing ran; "
          "3 refused by the engine (stderr says why and the fix); 128+N stopped by signal N. Details: docs/cli.md.")
