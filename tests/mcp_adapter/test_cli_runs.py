"""The foundation's CLI commands, run as real subprocesses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from engine import Engine
from mcp_adapter.cli.exit_codes import REFUSED


def _cli(cli_command: list[str], cli_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_command, *args], env=cli_env, capture_output=True, text=True, timeout=60, check=False)


def _seed_runs(engine: Engine) -> None:
    engine.ctx.runs.create("run-done", {"task": "write docs", "task_type": "docs", "verify": None, "attempt": 1})
    for event in ("start", "generated", "written"):
        engine.ctx.runs.fire("run-done", event)
    engine.ctx.runs.create("run-live", {"task": "add tests", "task_type": "test", "verify": "pytest", "attempt": 1})
    engine.ctx.runs.fire("run-live", "start")


def test_runs_lists_every_run_as_json(engine: Engine, cli_command: list[str], cli_env: dict[str, str]) -> None:
    _seed_runs(engine)
    result = _cli(cli_command, cli_env, "runs", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["run_id"]: r for r in json.loads(result.stdout)}
    assert {k: v["state"] for k, v in rows.items()} == {"run-done": "done", "run-live": "delegating"}
    assert rows["run-done"]["task_type"] == "docs"


def test_run_shows_the_journal_of_one_run(engine: Engine, cli_command: list[str], cli_env: dict[str, str]) -> None:
    _seed_runs(engine)
    result = _cli(cli_command, cli_env, "run", "run-done", "--json")
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert [(e["event"], e["to"]) for e in view["events"]] == [
        ("create", "pending"), ("start", "delegating"), ("generated", "writing"), ("written", "done"),
    ]
    text = _cli(cli_command, cli_env, "run", "run-done")
    assert "written" in text.stdout and "-> done" in text.stdout


def test_an_unknown_run_id_is_a_clear_error_not_a_traceback(
    engine: Engine, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    result = _cli(cli_command, cli_env, "run", "run-missing")
    assert result.returncode == REFUSED
    assert "no machine with id 'run-missing'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_diagram_with_a_run_highlights_its_state_and_writes_a_file(
    engine: Engine, cli_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    _seed_runs(engine)
    out = tmp_path / "run.mmd"
    result = _cli(cli_command, cli_env, "diagram", "delegation", "--run", "run-live", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith("---\ntitle: delegation run-live - delegating\n")
    assert "class delegating current" in text
    assert "pending --> delegating : start (step 1)" in text


def test_diagram_of_a_run_under_the_wrong_machine_names_the_problem(
    engine: Engine, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    _seed_runs(engine)
    result = _cli(cli_command, cli_env, "diagram", "session", "--run", "run-live")
    assert result.returncode == REFUSED
    assert "run-live is a delegation" in result.stderr


def test_options_are_accepted_before_or_after_the_subcommand(
    project_dir: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "LOCAL_LLM_PROJECT"}
    before = _cli(cli_command, env, "--project", str(project_dir), "--json", "status")
    after = _cli(cli_command, env, "status", "--project", str(project_dir), "--json")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout)["state"] == json.loads(after.stdout)["state"] == "idle"
    assert (project_dir / ".claude" / "workflow" / "state.db").exists()


def test_a_missing_project_directory_is_named_in_the_error(
    tmp_path: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    result = _cli(cli_command, cli_env, "--project", str(tmp_path / "nowhere"), "runs")
    assert result.returncode == REFUSED
    assert "nowhere" in result.stderr and "does not exist" in result.stderr


def test_commands_log_json_lines_to_the_engine_log_and_nothing_to_stdout(
    engine: Engine, project_dir: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    _seed_runs(engine)
    result = _cli(cli_command, cli_env, "resume", "--json")
    report = json.loads(result.stdout)  # stdout holds only the result
    assert set(report) >= {"resumed", "aborted", "skipped", "errors"}
    lines = (project_dir / ".claude" / "workflow" / "engine.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r.get("event") == "recovering run" and r.get("run_id") == "run-live" for r in records)
