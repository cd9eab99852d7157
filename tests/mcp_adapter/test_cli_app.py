"""The typer app and its entry point, as real subprocesses: help for every command, options on either side of the
command, progress bars only on a terminal's stderr, and a `serve` that never loads the CLI libraries."""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio
import pytest
from rich.console import Console
from rich.progress import Progress as Bar

from engine import Engine
from engine.testing.ollama_double import OllamaDouble
from engine.testing.scripted import files_answer
from mcp_adapter.cli.exit_codes import REFUSED, USAGE
from mcp_adapter.cli.progress import AmountColumn, BarReporter
from mcp_adapter.entry import ServeOptions, serve_options

REPO = Path(__file__).resolve().parents[2]

COMMANDS = ("serve", "capability", "status", "stats", "enable", "disable", "analyze", "delegate", "runs", "run",
            "resume", "cancel", "diagram", "demo", "eval", "install-command")

CLI_LIBRARIES = ("typer", "click", "rich")

# Runs the real entry point on a `serve` command line; stdin is /dev/null, so the server starts, reads EOF and
# returns. Then it reports which CLI-library modules the process loaded (on stderr: stdout is the protocol's).
SERVE_PROBE = f"""
import json, sys
from mcp_adapter.entry import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {CLI_LIBRARIES!r})
print("PROBE " + json.dumps({{"code": code, "loaded": loaded}}), file=sys.stderr)
"""

SDK_PROBE = """
import json, sys
import mcp.server
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "click")))
"""


def _cli(cli_command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_command, *args], env=env, capture_output=True, text=True, timeout=60, cwd=REPO,
                          check=False)


def _probe_serve(env: dict[str, str], *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", SERVE_PROBE, *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert proc.stdout == "", proc.stdout
    probe = [line for line in proc.stderr.splitlines() if line.startswith("PROBE ")]
    assert probe, proc.stderr
    report: dict[str, Any] = json.loads(probe[-1].removeprefix("PROBE "))
    return report


def _on_a_terminal(cli_command: list[str], env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal and stdout on a pipe; returns (exit code, stdout, what the terminal got)."""
    env = {**env, "TERM": "xterm-256color", "COLUMNS": "200"}
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "FORCE_COLOR"):
        env.pop(name, None)
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([*cli_command, *args], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=follower)
        os.close(follower)
        chunks = []
        while True:  # until the child's end of the terminal is closed (EIO): it has exited
            try:
                chunk = os.read(leader, 65536)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_serve_runs_without_loading_typer_or_rich(cli_env: dict[str, str], project_dir: Path) -> None:
    env = {k: v for k, v in cli_env.items() if k != "LOCAL_LLM_PROJECT"}
    for args in (("--project", str(project_dir), "serve"), ("serve", "--project", str(project_dir), "-v")):
        probe = _probe_serve(env, *args)
        assert probe["code"] == 0
        loaded = {m.split(".")[0] for m in probe["loaded"]}
        assert not loaded & {"typer", "rich"}, probe["loaded"]
    assert (project_dir / ".claude" / "workflow" / "engine.log").exists()


def test_serve_loads_click_only_as_far_as_the_mcp_sdk_itself_does(cli_env: dict[str, str]) -> None:
    # The SDK's HTTP transports import uvicorn, which imports click: that much is the SDK's, not the CLI's.
    probe = _probe_serve(cli_env, "serve")
    sdk = subprocess.run([sys.executable, "-c", SDK_PROBE], env=cli_env, capture_output=True, text=True, timeout=60,
                         cwd=REPO, check=False)
    assert sdk.returncode == 0, sdk.stderr
    clicks = {m for m in probe["loaded"] if m.split(".")[0] == "click"}
    assert clicks <= set(json.loads(sdk.stdout))


def test_a_non_serve_command_line_does_load_the_cli_library(cli_env: dict[str, str]) -> None:
    # The other side of the probe above: the same check sees typer when the command goes to the typer app.
    proc = subprocess.run([sys.executable, "-c", SERVE_PROBE, "status", "--json"], env=cli_env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert json.loads(proc.stdout)["state"] == "idle"
    assert "typer" in json.loads(proc.stderr.splitlines()[-1].removeprefix("PROBE "))["loaded"]


def test_the_entry_routes_serve_with_its_global_options_on_either_side() -> None:
    assert serve_options(["serve"]) == ServeOptions(project=None, verbose=False)
    assert serve_options(["--project", "p", "serve", "-v"]) == ServeOptions(project="p", verbose=True)
    assert serve_options(["serve", "--json", "--project=p", "--verbose"]) == ServeOptions(project="p", verbose=True)


@pytest.mark.parametrize("argv", [
    ["serve", "--help"], ["serve", "extra"], ["analyze", "serve"], ["--project", "serve"], ["--proj", "p", "serve"],
    ["status"], [], ["serve", "--project"],
])
def test_the_entry_leaves_every_other_command_line_to_the_typer_app(argv: list[str]) -> None:
    assert serve_options(argv) is None


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli_command: list[str], cli_env: dict[str, str], command: str) -> None:
    proc = _cli(cli_command, cli_env, command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert f"Usage: local-llm {command}" in proc.stdout
    assert "--project" in proc.stdout and "--json" in proc.stdout


def test_the_top_level_help_lists_every_command(cli_command: list[str], cli_env: dict[str, str]) -> None:
    proc = _cli(cli_command, cli_env, "-h")
    assert proc.returncode == 0, proc.stderr
    assert all(command in proc.stdout for command in COMMANDS)


def test_json_after_the_command_prints_the_same_result_as_before_it(
    engine: Engine, project_dir: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    engine.ctx.runs.create("run-a", {"task": "write [docs]", "task_type": "docs", "verify": None, "attempt": 1})
    env = {k: v for k, v in cli_env.items() if k != "LOCAL_LLM_PROJECT"}
    after = _cli(cli_command, env, "runs", "--json", "--project", str(project_dir))
    before = _cli(cli_command, env, "--json", "--project", str(project_dir), "runs")
    assert after.returncode == before.returncode == 0, after.stderr + before.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert [r["run_id"] for r in json.loads(after.stdout)] == ["run-a"]


def test_runs_prints_a_table_with_one_row_per_run(
    engine: Engine, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    engine.ctx.runs.create("run-a", {"task": "write [bold]docs[/bold]", "task_type": "docs", "verify": None,
                                 "attempt": 1})
    proc = _cli(cli_command, cli_env, "runs")
    assert proc.returncode == 0, proc.stderr
    header, *rest = [line for line in proc.stdout.splitlines() if line.strip()]
    assert header.split() == ["run_id", "state", "task_type", "attempts", "task"]
    row = next(line for line in rest if "run-a" in line)
    assert row.split()[:3] == ["run-a", "pending", "docs"]
    assert "write [bold]docs[/bold]" in row  # the user's text, not rich markup
    assert "\x1b[" not in proc.stdout


def test_runs_of_an_empty_project_says_none(cli_command: list[str], cli_env: dict[str, str]) -> None:
    assert _cli(cli_command, cli_env, "runs").stdout == "(none)\n"


def test_a_usage_error_exits_2_without_touching_stdout(cli_command: list[str], cli_env: dict[str, str]) -> None:
    missing = _cli(cli_command, cli_env, "delegate", "x")
    assert missing.returncode == 2 and missing.stdout == ""
    assert "--output" in missing.stderr
    bad_choice = _cli(cli_command, cli_env, "diagram", "nothing")
    assert bad_choice.returncode == 2 and "nothing" in bad_choice.stderr
    no_command = _cli(cli_command, cli_env)
    assert no_command.returncode == 2


def test_an_engine_refusal_exits_3_apart_from_a_usage_error_and_help_says_which_is_which(
    cli_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    # Before, both exited 2: a script could not tell "called it wrong" from "the engine said no".
    usage = _cli(cli_command, cli_env, "run", "run-missing", "--no-such-option")
    refused = _cli(cli_command, cli_env, "run", "run-missing")
    assert (usage.returncode, refused.returncode) == (USAGE, REFUSED) == (2, 3)
    assert refused.stdout == "" and refused.stderr.startswith("local-llm run: no machine with id 'run-missing'")
    assert len(refused.stderr.splitlines()) == 1
    # `serve` (routed around the typer app) refuses the same way.
    serve = _cli(cli_command, cli_env, "serve", "--project", str(tmp_path / "nowhere"))
    assert serve.returncode == REFUSED and "does not exist" in serve.stderr
    epilog = " ".join(_cli(cli_command, cli_env, "--help").stdout.split())
    assert "2 usage error" in epilog and "3 refused by the engine" in epilog and "docs/cli.md" in epilog


def test_enable_draws_progress_on_a_terminal_and_keeps_stdout_pure_json(
    cli_command: list[str], cli_env: dict[str, str], ollama_double: OllamaDouble
) -> None:
    env = {**cli_env, "OLLAMA_HOST": ollama_double.host}
    code, out, terminal = _on_a_terminal(cli_command, env, "enable", "--backend", "ollama", "--llm",
                                         "deepseek-coder:33b", "--json")
    assert code == 0, terminal
    assert json.loads(out)["state"] == "loaded"
    assert "\x1b[" not in out
    assert "deepseek-coder:33b" in terminal and "\x1b[" in terminal


@pytest.mark.answer_form_json
def test_delegate_shows_its_attempts_on_a_terminal(
    cli_command: list[str], cli_env: dict[str, str], ollama_double: OllamaDouble, project_dir: Path
) -> None:
    env = {**cli_env, "OLLAMA_HOST": ollama_double.host}
    assert _cli(cli_command, env, "enable", "--backend", "ollama", "--llm", "deepseek-coder:6.7b").returncode == 0
    ollama_double.reply(files_answer({"a.txt": "A\n"}))
    code, out, terminal = _on_a_terminal(cli_command, env, "delegate", "write a", "--output", "a.txt")
    assert code == 0, terminal
    assert out.startswith("run ") and "written" in out
    assert "after 1 attempt(s)" in terminal  # the bar's last message; the earlier ones may fall between redraws
    assert (project_dir / "a.txt").read_text() == "A\n"


def test_no_progress_reaches_stderr_when_it_is_a_pipe(
    cli_command: list[str], cli_env: dict[str, str], ollama_double: OllamaDouble
) -> None:
    env = {**cli_env, "OLLAMA_HOST": ollama_double.host}
    proc = _cli(cli_command, env, "enable", "--backend", "ollama", "--llm", "deepseek-coder:33b", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["state"] == "loaded"
    assert "pulling" not in proc.stderr and "\r" not in proc.stderr and "\x1b[" not in proc.stderr


def test_the_bar_shows_a_pull_in_bytes_then_pulses_then_counts_attempts() -> None:
    bar = Bar(AmountColumn(), console=Console(file=io.StringIO(), force_terminal=True, width=100))
    reporter = BarReporter(bar)

    def amount() -> str:
        return AmountColumn().render(bar.tasks[-1]).plain

    anyio.run(reporter, 1.5e9, 3.8e9, "deepseek-coder:33b: pulling 5ff0abeeac1d")
    assert amount() == "1.5/3.8 GB"
    anyio.run(reporter, 0, None, "loading deepseek-coder:33b")
    assert [t.total for t in bar.tasks] == [None] and amount() == ""
    anyio.run(reporter, 1, 3, "attempt 2: 120 tokens generated")
    assert amount() == "1/3" and bar.tasks[-1].description == "attempt 2: 120 tokens generated"


def test_the_console_script_and_python_m_use_the_entry_module() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["local-llm"] == "mcp_adapter.entry:main"
    assert "from mcp_adapter.entry import main" in (REPO / "mcp_adapter" / "__main__.py").read_text()


def test_a_result_with_a_conflict_says_which_file_was_left_alone_and_where_the_runs_version_is() -> None:
    from mcp_adapter.cli.delegation import result_text

    text = result_text({"run_id": "run-1", "state": "failed", "attempts": 1, "files": [], "conflicts": [
        {"path": "a.py", "found": "changed", "during": "writing", "kept_at": ".claude/workflow/conflicts/run-1/a.py"}],
        "error": "conflict: a.py was changed by someone else"})
    assert "conflict     a.py: changed by someone else while writing, left alone; the run's version: " \
           ".claude/workflow/conflicts/run-1/a.py" in text
