"""What `local-llm install-command` writes for Claude Code: the /workflow:implement slash command, the `local-llm`
skill and the `local-llm-worker` subagent, each naming the tool as Claude Code does, and the rules for writing them.

One source of truth: the files are the Claude Code plugin's own (mcp_adapter/resources/{commands,skills,agents}/,
named by .claude-plugin/plugin.json), which name the plugin's tool `mcp__plugin_workflow_local-llm__local_llm`;
installed here, that name becomes the one of the server the user registered with `claude mcp add`.

Checked against Claude Code's docs and its CLI (2.1.197, `claude mcp add --help`, on 2026-11-25):

- Tools of an MCP server are named `mcp__<server name>__<tool name>` in permission rules and `allowed-tools`
  (https://code.claude.com/docs/en/skills, "allowed-tools": "MCP tools: full tool name, mcp__server__tool").
- A server name may hold letters, digits, `-` and `_`: `claude mcp add` refuses anything else with "Invalid name
  NAME. Names can only contain letters, numbers, hyphens, and underscores."
- Project skills live at `.claude/skills/<skill-name>/SKILL.md` with YAML frontmatter (`name`, `description`,
  `argument-hint`, `allowed-tools`, ...); personal ones at `~/.claude/skills/` (https://code.claude.com/docs/en/skills,
  "Where skills live"). Slash commands at `.claude/commands/` keep working and take the same frontmatter
  (https://code.claude.com/docs/en/slash-commands).
"""

from __future__ import annotations

import importlib.resources
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine import InvalidArgument, UserError

__all__ = [
    "AGENT_PATH",
    "COMMAND_PATH",
    "DEFAULT_SERVER_NAME",
    "PLUGIN_TOOL",
    "SKILL_PATH",
    "Planned",
    "Status",
    "check_server_name",
    "decide",
    "install",
    "planned_files",
    "render",
    "tool_name",
]

DEFAULT_SERVER_NAME = "local-llm"
"""The name the README's `claude mcp add` line gives the server."""
COMMAND_PATH = Path(".claude") / "commands" / "workflow" / "implement.md"
SKILL_PATH = Path(".claude") / "skills" / "local-llm" / "SKILL.md"
AGENT_PATH = Path(".claude") / "agents" / "local-llm-worker.md"
PLUGIN_TOOL = "mcp__plugin_workflow_local-llm__local_llm"
"""The tool's name when the plugin `workflow` runs it as its server `local-llm`: the name its files carry."""

_SERVER_NAME = re.compile(r"[A-Za-z0-9_-]+")
"""Claude Code's rule, as `claude mcp add` checks it: letters, numbers, hyphens, and underscores."""

Status = Literal["installed", "updated", "unchanged", "refused"]


@dataclass(frozen=True)
class Planned:
    kind: Literal["command", "skill", "agent"]
    relative: Path
    text: str


def check_server_name(name: str) -> str:
    """The server name as given to `claude mcp add`, or an error that says Claude Code's rule."""
    if not _SERVER_NAME.fullmatch(name):
        raise InvalidArgument(
            "--server-name",
            "the name given to `claude mcp add`: letters, digits, '-' and '_' only (Claude Code's rule)", name)
    return name


def tool_name(server_name: str) -> str:
    """How Claude Code names the `local_llm` tool of that server (permission rules, `allowed-tools`)."""
    return f"mcp__{check_server_name(server_name)}__local_llm"


def render(template: str, *, server_name: str) -> str:
    """A plugin file as a `claude mcp add` user needs it: the plugin's tool name replaced by that server's."""
    return template.replace(PLUGIN_TOOL, tool_name(server_name))


def _template(name: str) -> str:
    return importlib.resources.files("mcp_adapter").joinpath(f"resources/{name}").read_text(encoding="utf-8")


def planned_files(server_name: str) -> list[Planned]:
    return [
        Planned("command", COMMAND_PATH, render(_template("commands/implement.md"), server_name=server_name)),
        Planned("skill", SKILL_PATH, render(_template("skills/local-llm/SKILL.md"), server_name=server_name)),
        Planned("agent", AGENT_PATH, render(_template("agents/local-llm-worker.md"), server_name=server_name)),
    ]


def decide(existing: bytes | None, new: bytes, *, force: bool) -> Status:
    """A file is written when it is absent; one with other bytes (the user's edits, another server name, another
    version's text) only with --force."""
    if existing is None:
        return "installed"
    if existing == new:
        return "unchanged"
    return "updated" if force else "refused"


def _inside(base: Path, target: Path) -> Path:
    """The target, refused when it (through a symlinked `.claude` or a symlinked file) lands outside `base`."""
    real_base, real = base.resolve(), target.resolve()
    if real != real_base and real_base not in real.parents:
        raise UserError(f"{target}: resolves to {real}, outside {real_base}; nothing was written "
                        "(a symlinked .claude directory or file?)")
    return target


def _read(target: Path) -> bytes | None:
    try:
        return target.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UserError(f"{target}: is a directory; nothing was written") from None


def _file_mode(target: Path) -> int:
    """The mode the file has, or the one `open()` would give a new file (mkstemp's is 0600)."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _atomic_write(target: Path, data: bytes) -> None:
    """Temp file beside the target, fsync, rename over it: a reader sees the old file or the new one, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(target)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def install(base: Path, files: list[Planned], *, force: bool, confine: bool = True) -> list[dict[str, str]]:
    """Write `files` under `base`, all or none: every target is checked before the first write. `confine`: refuse a
    target that resolves outside `base` (a project's; a user's ~/.claude may well be a link into a dotfiles repo)."""
    decided = []
    for planned in files:
        target = _inside(base, base / planned.relative) if confine else base / planned.relative
        data = planned.text.encode("utf-8")
        decided.append((planned, target, data, decide(_read(target), data, force=force)))
    refused = [str(target) for _, target, _, status in decided if status == "refused"]
    if refused:
        raise UserError(
            f"{', '.join(refused)}: already there with other content (edited by you, written for another "
            "--server-name, or by another version of local-llm); nothing was written. Keep your edits, or replace "
            "the files with `local-llm install-command --force`")
    for _, target, data, status in decided:
        if status != "unchanged":
            _atomic_write(target, data)
    return [{"kind": planned.kind, "path": str(target), "status": status} for planned, target, _, status in decided]
