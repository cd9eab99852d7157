"""The repository as a Claude Code plugin marketplace (.claude-plugin/): the manifests' structure as Claude Code 2.1.332
reads it, the files they name, and the tool name the skill, the command and the agent allow.

`claude plugin validate .` passed on these manifests (Claude Code 2.1.332, docs/plugin.md); this test keeps what that
run and the plugin reference rely on, without npm."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from mcp_adapter.cli.claude_code import PLUGIN_TOOL
from mcp_adapter.plugin_bootstrap import server_env
from tests.markers import CLAUDE_CLI, needs_claude_cli

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / ".claude-plugin"
BOOTSTRAP = "${CLAUDE_PLUGIN_ROOT}/mcp_adapter/plugin_bootstrap.py"
_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
"""The plugin reference's rule for a plugin name: kebab-case, starting with a letter."""


def _json(name: str) -> dict[str, Any]:
    data = json.loads((MANIFESTS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _frontmatter(path: Path) -> dict[str, Any]:
    match = re.fullmatch(r"---\n(.*?)\n---\n(.*)", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert match, f"{path}: no frontmatter"
    front = yaml.safe_load(match.group(1))
    assert isinstance(front, dict)
    return front


def _plugin_tool(plugin: dict[str, Any]) -> str:
    """How Claude Code names a plugin server's tool: mcp__plugin_<plugin>_<server>__<tool>, where a server name's
    characters outside [a-zA-Z0-9_-] become `_` (the CLI's own description of its naming)."""
    (server,) = plugin["mcpServers"]
    return f"mcp__plugin_{plugin['name']}_{re.sub(r'[^a-zA-Z0-9_-]', '_', server)}__local_llm"


def _named_paths(plugin: dict[str, Any], field: str) -> list[Path]:
    paths = plugin[field] if isinstance(plugin[field], list) else [plugin[field]]
    assert all(isinstance(p, str) and p.startswith("./") for p in paths), (field, paths)
    return [REPO / p for p in paths]


def test_only_the_two_manifests_are_in_the_plugin_directory_and_no_root_mcp_json_configures_this_repository() -> None:
    assert sorted(p.name for p in MANIFESTS.iterdir()) == ["marketplace.json", "plugin.json"]
    assert not (REPO / ".mcp.json").exists()


def test_the_marketplace_lists_this_repository_as_its_plugin() -> None:
    marketplace, plugin = _json("marketplace.json"), _json("plugin.json")
    assert _NAME.fullmatch(marketplace["name"]) and marketplace["owner"]["name"]
    (entry,) = marketplace["plugins"]
    assert entry["name"] == plugin["name"] and entry["source"] == "./"


def test_the_plugin_is_named_so_that_its_command_reads_workflow_implement() -> None:
    plugin = _json("plugin.json")
    assert plugin["name"] == "workflow" and _NAME.fullmatch(plugin["name"])
    (command,) = _named_paths(plugin, "commands")
    assert command.is_file() and command.stem == "implement"  # /<plugin>:<file name>


def test_the_skill_the_command_and_the_agent_are_under_mcp_adapter_and_allow_the_plugin_s_tool() -> None:
    plugin = _json("plugin.json")
    tool = _plugin_tool(plugin)
    assert tool == PLUGIN_TOOL == "mcp__plugin_workflow_local-llm__local_llm"
    (skills,) = _named_paths(plugin, "skills")
    (skill,) = skills.glob("*/SKILL.md")
    (command,) = _named_paths(plugin, "commands")
    (agent,) = _named_paths(plugin, "agents")
    for path in (skill, command, agent):
        assert path.is_file() and (REPO / "mcp_adapter") in path.parents, path
        text = path.read_text(encoding="utf-8")
        assert f"`{tool}`" in text and "{{" not in text, path  # named in the text too, no template left
        assert set(re.findall(r"mcp__[\w-]+", text)) == {tool}, path
    assert _frontmatter(skill)["allowed-tools"] == tool and _frontmatter(skill)["name"] == skill.parent.name
    assert _frontmatter(command)["allowed-tools"] == tool
    agent_front = _frontmatter(agent)
    # mechanical work: this tool and reading files, nothing that edits or runs commands
    assert [t.strip() for t in agent_front["tools"].split(",")] == ["Read", "Grep", "Glob", tool]
    assert not {"permissionMode", "mcpServers", "hooks"} & set(agent_front)  # ignored for plugin agents


def test_the_server_is_declared_inline_started_by_the_bootstrap_on_the_user_s_project() -> None:
    plugin = _json("plugin.json")
    (server,) = plugin["mcpServers"].values()
    assert server["command"] == "python3" and server["args"] == ["-I", BOOTSTRAP, "serve"]
    assert server["env"]["LOCAL_LLM_PROJECT"] == "${CLAUDE_PROJECT_DIR}"
    assert (REPO / BOOTSTRAP.removeprefix("${CLAUDE_PLUGIN_ROOT}/")).is_file()
    (start,) = plugin["hooks"]["SessionStart"]
    (hook,) = start["hooks"]
    assert hook["type"] == "command" and hook["command"] == f'python3 -I "{BOOTSTRAP}" install'
    assert hook["timeout"] >= 300  # a first install with pip took about 100 s here


def test_every_user_option_has_a_default_and_reaches_the_server_as_what_the_engine_reads() -> None:
    plugin = _json("plugin.json")
    options = plugin["userConfig"]
    assert set(options) == {"backend", "url", "model"}
    for key, option in options.items():
        assert option["type"] == "string" and option["title"] and option["description"] and "default" in option, key
        assert not option.get("sensitive") and not option.get("required"), key
    (server,) = plugin["mcpServers"].values()
    passed = {k: v for k, v in server["env"].items() if v.startswith("${user_config.")}
    assert passed == {f"LOCAL_LLM_PLUGIN_{key.upper()}": f"${{user_config.{key}}}" for key in options}
    # the defaults leave the user's environment alone: Ollama's usual place, the recommended model
    defaults = {name: options[value[len("${user_config."):-1]]["default"] for name, value in passed.items()}
    assert server_env(defaults) == {}


CLAUDE = CLAUDE_CLI


@needs_claude_cli
def test_claude_plugin_validate_passes_on_the_repository(tmp_path: Path) -> None:
    assert CLAUDE is not None
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}  # an empty HOME: no login, no settings of the user's
    done = subprocess.run([CLAUDE, "plugin", "validate", str(REPO)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "Validation passed" in done.stdout, done.stdout + done.stderr
    for provided in ("skills: workflow:local-llm", "commands: workflow:implement", "agents: workflow:local-llm-worker",
                     "mcpServers: local-llm stdio python3"):
        assert provided in done.stdout, done.stdout
