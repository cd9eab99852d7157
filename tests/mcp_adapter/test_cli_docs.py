"""docs/cli.md against the CLI itself: every command and every option it has is named there, and the exit-code table
there is the one `local-llm --help` and mcp_adapter/cli/exit_codes.py give."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from mcp_adapter.cli import exit_codes
from mcp_adapter.cli.app import app

REPO = Path(__file__).resolve().parents[2]
CLI_DOC = REPO / "docs" / "cli.md"


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    """Every command by its full name (`db check`). Duck-typed: typer ships its own copy of click's classes."""
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        found[f"{prefix}{name}"] = command
        if hasattr(command, "commands"):
            found.update(_commands(command, f"{prefix}{name} "))
    return found


def test_the_cli_page_names_every_command_and_every_option() -> None:
    doc = CLI_DOC.read_text(encoding="utf-8")
    commands = _commands(typer.main.get_command(app))
    assert {"serve", "batch", "eval", "db check"} <= set(commands)
    missing = [name for name in commands if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", doc)]
    assert missing == [], f"docs/cli.md does not name these commands: {missing}"
    unnamed = {name: options for name, command in commands.items()
               if (options := [o for p in command.params if p.param_type_name == "option" for o in p.opts
                               if o != "--help" and not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", doc)])}
    assert unnamed == {}, f"docs/cli.md does not name these options: {unnamed}"


def test_the_exit_codes_are_distinct_and_documented_where_users_look() -> None:
    codes = [exit_codes.OK, exit_codes.FAILED, exit_codes.USAGE, exit_codes.REFUSED, exit_codes.INTERRUPTED]
    assert len(set(codes)) == len(codes) and exit_codes.USAGE == 2  # click's own code for a usage error
    doc = CLI_DOC.read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| (\d+|128 \+ N) \| (.+) \|$", doc, flags=re.MULTILINE))
    assert set(table) == {"0", "1", "2", "3", "128 + N"}
    assert table["2"].startswith("usage") and table["3"].startswith("refused")
    for code, meaning in exit_codes.TABLE:
        assert code.replace("+", " + ") in table, code
        assert meaning.split(":")[0].split(" ")[0] in table[code.replace("+", " + ")], (code, meaning)
    assert "2 usage" in exit_codes.EPILOG and "3 refused" in exit_codes.EPILOG and "docs/cli.md" in exit_codes.EPILOG
