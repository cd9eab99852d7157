"""`local-llm install-command`, as a real subprocess: the slash command, the skill and the subagent, named for the
server the user registered, never overwriting the user's edits; and the README's `claude mcp add` line, checked
against the order Claude Code's CLI parses (its `-e` takes every value after it)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcp_adapter.cli.claude_code import AGENT_PATH, COMMAND_PATH, PLUGIN_TOOL, SKILL_PATH, decide
from mcp_adapter.cli.exit_codes import REFUSED

REPO = Path(__file__).resolve().parents[2]
ACTIONS = ("capability", "enable", "analyze", "delegate", "result", "stats", "disable")


def _cli(cli_command: list[str], cli_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_command, "install-command", *args], env=cli_env, capture_output=True, text=True,
                          timeout=60, check=False)


def _frontmatter(path: Path) -> tuple[dict[str, Any], str]:
    text = path.read_text(encoding="utf-8")
    match = re.fullmatch(r"---\n(.*?)\n---\n(.*)", text, flags=re.DOTALL)
    assert match, f"{path}: no frontmatter between --- lines"
    front = yaml.safe_load(match.group(1))
    assert isinstance(front, dict), front
    return front, match.group(2)


def test_the_skill_the_command_and_the_agent_name_the_tool_of_the_server_the_user_registered(
    project_dir: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    result = _cli(cli_command, cli_env, "--server-name", "my_llm-2", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["tool"] == "mcp__my_llm-2__local_llm" and answer["server_name"] == "my_llm-2"
    assert [(f["kind"], f["path"], f["status"]) for f in answer["files"]] == [
        ("command", str(project_dir / COMMAND_PATH), "installed"),
        ("skill", str(project_dir / SKILL_PATH), "installed"),
        ("agent", str(project_dir / AGENT_PATH), "installed")]
    skill, body = _frontmatter(project_dir / SKILL_PATH)
    assert skill["name"] == SKILL_PATH.parent.name == "local-llm"
    assert skill["allowed-tools"] == "mcp__my_llm-2__local_llm"
    assert "mechanical" in skill["description"] and len(skill["description"]) <= 1024
    assert "TASK" in skill["argument-hint"]
    assert all(f'"action": "{action}"' in body for action in ACTIONS), body
    assert all(field in body for field in ("output_files", "context_files", "verify", "conflicts", "rolled back"))
    assert "`mcp__my_llm-2__local_llm`" in body and "local-llm__" not in body
    command, command_body = _frontmatter(project_dir / COMMAND_PATH)
    assert command["allowed-tools"] == "mcp__my_llm-2__local_llm"
    assert {"description", "argument-hint"} <= set(command) and "$ARGUMENTS" in command_body
    agent, agent_body = _frontmatter(project_dir / AGENT_PATH)
    assert agent["name"] == "local-llm-worker" and agent["tools"] == "Read, Grep, Glob, mcp__my_llm-2__local_llm"
    assert "`mcp__my_llm-2__local_llm`" in agent_body
    # one source: the plugin's own files, with the plugin's tool name replaced and nothing else
    for installed, shipped in ((SKILL_PATH, "skills/local-llm/SKILL.md"), (COMMAND_PATH, "commands/implement.md"),
                               (AGENT_PATH, "agents/local-llm-worker.md")):
        plugin_text = (REPO / "mcp_adapter" / "resources" / shipped).read_text(encoding="utf-8")
        assert PLUGIN_TOOL in plugin_text
        assert (project_dir / installed).read_text() == plugin_text.replace(PLUGIN_TOOL, "mcp__my_llm-2__local_llm")


def test_the_default_server_name_is_the_one_the_readme_registers(
    project_dir: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    result = _cli(cli_command, cli_env)
    assert result.returncode == 0, result.stderr
    assert "mcp__local-llm__local_llm" in result.stdout
    assert _frontmatter(project_dir / SKILL_PATH)[0]["allowed-tools"] == "mcp__local-llm__local_llm"


@pytest.mark.parametrize("name", ["my llm", "a.b", "", "mcp/x", "ñame", "name\n"])
def test_a_server_name_claude_code_would_refuse_is_refused_with_the_rule_and_nothing_written(
    project_dir: Path, cli_command: list[str], cli_env: dict[str, str], name: str
) -> None:
    result = _cli(cli_command, cli_env, "--server-name", name)
    assert result.returncode == REFUSED and result.stdout == ""
    assert "--server-name" in result.stderr and "letters, digits, '-' and '_' only" in result.stderr
    assert not (project_dir / ".claude" / "commands").exists() and not (project_dir / ".claude" / "skills").exists()


def test_a_file_the_user_edited_is_left_alone_unless_force(
    project_dir: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    assert _cli(cli_command, cli_env).returncode == 0
    skill, command = project_dir / SKILL_PATH, project_dir / COMMAND_PATH
    edited = skill.read_text() + "\nAlways delegate the tests of the billing module.\n"
    skill.write_text(edited)
    before = command.read_bytes()
    refused = _cli(cli_command, cli_env, "--server-name", "other")
    assert refused.returncode == REFUSED and refused.stdout == ""
    assert str(skill) in refused.stderr and "--force" in refused.stderr and "nothing was written" in refused.stderr
    assert skill.read_text() == edited and command.read_bytes() == before  # all or nothing: the command kept too
    forced = _cli(cli_command, cli_env, "--force", "--json")
    assert forced.returncode == 0, forced.stderr
    assert [f["status"] for f in json.loads(forced.stdout)["files"]] == ["unchanged", "updated", "unchanged"]
    assert "billing" not in skill.read_text() and command.read_bytes() == before


def test_installing_again_changes_nothing_and_says_so(
    project_dir: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    assert _cli(cli_command, cli_env).returncode == 0
    stamp = (project_dir / SKILL_PATH).stat().st_mtime_ns
    again = _cli(cli_command, cli_env, "--json")
    assert [f["status"] for f in json.loads(again.stdout)["files"]] == ["unchanged"] * 3
    assert (project_dir / SKILL_PATH).stat().st_mtime_ns == stamp
    assert oct((project_dir / SKILL_PATH).stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    import os

    current = os.umask(0)
    os.umask(current)
    return current


def test_a_claude_directory_that_links_outside_the_project_is_refused(
    project_dir: Path, tmp_path: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project_dir / ".claude").symlink_to(elsewhere)
    result = _cli(cli_command, cli_env)
    assert result.returncode == REFUSED and "outside" in result.stderr and "nothing was written" in result.stderr
    assert not (elsewhere / "commands").exists() and not (elsewhere / "skills").exists()  # (workflow/ is the engine's)


def test_user_installs_into_the_home_directory_even_through_a_linked_claude_directory(
    project_dir: Path, tmp_path: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    home, dotfiles = tmp_path / "home", tmp_path / "dotfiles"
    home.mkdir()
    dotfiles.mkdir()
    (home / ".claude").symlink_to(dotfiles)  # a common setup: ~/.claude kept in a dotfiles repository
    result = _cli(cli_command, {**cli_env, "HOME": str(home)}, "--user", "--json")
    assert result.returncode == 0, result.stderr
    assert [f["path"] for f in json.loads(result.stdout)["files"]] == [
        str(home / COMMAND_PATH), str(home / SKILL_PATH), str(home / AGENT_PATH)]
    assert (dotfiles / "skills" / "local-llm" / "SKILL.md").is_file()
    assert not (project_dir / ".claude" / "skills").exists()


def test_only_an_absent_file_or_force_lets_other_bytes_in() -> None:
    assert decide(None, b"new", force=False) == "installed"
    assert decide(b"new", b"new", force=False) == "unchanged"
    assert decide(b"mine", b"new", force=False) == "refused"
    assert decide(b"mine", b"new", force=True) == "updated"


# -- the README's `claude mcp add` lines ------------------------------------------------------------------------

ONE_VALUE = {"-s", "--scope", "-t", "--transport", "--callback-port", "--client-id"}
MANY_VALUES = {"-e", "--env", "-H", "--header"}
"""`claude mcp add --help` (Claude Code 2.1.197): `-e, --env <env...>` and `-H, --header <header...>` are variadic
(commander takes every following argument up to the next option), the others take one value or none."""


def mcp_add_problems(argv: list[str]) -> tuple[str | None, list[str]]:
    """The server name `claude mcp add ARGV` registers, and what is wrong with the line, read the way its
    parser reads it."""
    problems: list[str] = []
    positionals: list[str] = []
    command: list[str] = []
    separated = False
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            command, separated = argv[i:], True
            break
        if token in MANY_VALUES:
            taken = []
            while i < len(argv) and not argv[i].startswith("-"):
                taken.append(argv[i])
                i += 1
            problems += [f"{token} took {v!r}, which is no KEY=value" for v in taken
                         if token in ("-e", "--env") and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", v)]
        elif token in ONE_VALUE:
            i += 1
        elif not token.startswith("-"):
            positionals.append(token)
    name = positionals[0] if positionals else None
    if name is None:
        problems.append("no server name")
    if not separated:
        problems.append("no `--` before the command")
    command = positionals[1:] + command
    if len(command) < 2 or not command[0].endswith("local-llm") or command[1] != "serve":
        problems.append(f"the command is {command!r}, not `local-llm serve`")
    return name, problems


def _claude_code_section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return readme.split("\n## Claude Code\n", 1)[1].split("\n## ", 1)[0]


def _server_name_of(install_line: str) -> str:
    argv = shlex.split(install_line.split("#", 1)[0])
    return argv[argv.index("--server-name") + 1] if "--server-name" in argv else "local-llm"


def test_the_readmes_claude_mcp_add_line_puts_the_name_before_env_and_the_command_after_the_separator() -> None:
    section = _claude_code_section()
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)  # the plugin's, then `claude mcp add`'s
    assert blocks, "no sh block in the README's Claude Code section"
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    adds = [line for line in lines if line.startswith("claude mcp add ")]
    installs = [line for line in lines if line.startswith("local-llm install-command")]
    assert len(adds) == 1 and len(installs) == 1, lines
    argv = shlex.split(adds[0].split(" #", 1)[0])[3:]
    name, problems = mcp_add_problems(argv)
    assert problems == [], (adds[0], problems)
    assert "--scope" in argv or "-s" in argv, "the README's line shows the scope"
    assert any(t in ("-e", "--env") for t in argv), "the README's line shows an env variable"
    assert name == _server_name_of(installs[0])
    # the other name shown in the prose: the same pair, with --server-name
    inline = re.findall(r"`(claude mcp add [^`]*)`, then\s+`(local-llm install-command[^`]*)`", section)
    assert inline, "the README shows how to use another server name"
    for add, install in inline:
        other, problems = mcp_add_problems(shlex.split(add)[3:])
        assert problems == [] and other == _server_name_of(install) != "local-llm", (add, install)


def test_the_order_the_readme_warns_against_is_the_one_the_checker_refuses() -> None:
    # The README quotes the failing order; the checker must see what Claude Code saw ("Invalid environment variable
    # format: local-llm"), or the test above proves nothing.
    warned = re.search(r"\(`(claude mcp add [^`]*)` fails", _claude_code_section())
    assert warned
    _, problems = mcp_add_problems(shlex.split(warned.group(1).replace("...", "-- local-llm serve"))[3:])
    assert "-e took 'local-llm', which is no KEY=value" in problems
