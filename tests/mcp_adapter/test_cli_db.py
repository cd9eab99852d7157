"""`local-llm db check | move-aside | forget`, and every other command on a damaged database: one line on stderr that
names the file, the problem and the fix, exit code 3 (refused), no traceback (real `local-llm` subprocesses)."""

from __future__ import annotations

import json
import os
import pty
import select
import sqlite3
import subprocess
from pathlib import Path

import pytest

from engine import Engine, Project
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from mcp_adapter.cli.exit_codes import REFUSED


def _cli(cli_command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_command, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def state_db(project_dir: Path) -> Path:
    return Project.resolve(project_dir).state_db


@pytest.mark.parametrize("command", [["status"], ["runs"], ["run", "run-1"], ["resume"], ["cancel", "run-1"],
                                     ["disable"], ["diagram", "delegation", "--run", "run-1"]])
def test_every_command_on_a_damaged_database_says_what_to_do_without_a_traceback(
    cli_command: list[str], cli_env: dict[str, str], state_db: Path, command: list[str]
) -> None:
    state_db.parent.mkdir(parents=True)
    state_db.write_bytes(b"not a database\n" * 100)
    done = _cli(cli_command, cli_env, *command)
    assert done.returncode == REFUSED, done.stdout + done.stderr
    said = done.stdout if command == ["status"] else done.stderr  # status still answers, on stdout
    assert "Traceback" not in done.stderr and str(state_db) in said and "local-llm db move-aside" in said


def test_check_then_move_aside_then_a_fresh_start(cli_command: list[str], cli_env: dict[str, str],
                                                    state_db: Path) -> None:
    state_db.parent.mkdir(parents=True)
    state_db.write_bytes(b"not a database\n" * 100)
    check = _cli(cli_command, cli_env, "db", "check", "--json")
    assert check.returncode == 1 and json.loads(check.stdout)["ok"] is False
    moved = _cli(cli_command, cli_env, "db", "move-aside")
    assert moved.returncode == 0, moved.stderr
    assert "moved" in moved.stdout and ".damaged-" in moved.stdout
    [kept] = state_db.parent.glob("state.db.damaged-*")
    assert kept.read_bytes() == b"not a database\n" * 100
    again = _cli(cli_command, cli_env, "db", "move-aside")
    assert again.returncode == REFUSED and "local-llm db move-aside: " in again.stderr and "not damaged" in again.stderr
    status = _cli(cli_command, cli_env, "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "idle"


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_row_that_cannot_be_read_is_listed_checked_and_forgotten(
    cli_command: list[str], cli_env: dict[str, str], engine: Engine, state_db: Path
) -> None:
    use_backend(engine, ScriptedBackend())
    runs = [(await engine.delegate(task=f"t{i}", output_files=[f"f{i}.txt"]))["run_id"] for i in range(2)]
    engine.close()
    with sqlite3.connect(state_db) as conn:
        conn.execute("UPDATE machines SET state = 'teleporting' WHERE id = ?", (runs[0],))
    listed = _cli(cli_command, cli_env, "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert rows[runs[0]]["damaged"] and "'teleporting'" in rows[runs[0]]["error"] and rows[runs[1]]["state"] == "done"
    shown = _cli(cli_command, cli_env, "run", runs[0])
    assert shown.returncode == REFUSED and f"local-llm db forget {runs[0]}" in shown.stderr
    check = _cli(cli_command, cli_env, "db", "check")
    assert check.returncode == 1 and runs[0] in check.stdout
    refused = _cli(cli_command, cli_env, "db", "forget", runs[1])
    assert refused.returncode == REFUSED and "reads fine" in refused.stderr
    forgotten = _cli(cli_command, cli_env, "db", "forget", runs[0], "--json")
    assert forgotten.returncode == 0, forgotten.stderr
    assert Path(json.loads(forgotten.stdout)["backup"]).exists()
    assert _cli(cli_command, cli_env, "db", "check").returncode == 0


def _on_a_terminal(cli_command: list[str], env: dict[str, str], answer: bytes, *args: str) -> tuple[int, str]:
    """Run with stdin and stderr on a pseudo-terminal (stdout a pipe), answering the first question with `answer`."""
    main, child = pty.openpty()
    process = subprocess.Popen([*cli_command, *args], env=env, stdin=child, stderr=child, stdout=subprocess.PIPE)
    os.close(child)
    said = b""
    try:
        while b"[y/N]" not in said and process.poll() is None:
            ready, _, _ = select.select([main], [], [], 30)
            assert ready, f"no question within 30 s: {said!r}"
            said += os.read(main, 4096)
        os.write(main, answer)
        process.wait(timeout=30)
        while select.select([main], [], [], 0.2)[0]:
            try:
                said += os.read(main, 4096)
            except OSError:  # the child closed the terminal
                break
    finally:
        if process.poll() is None:
            process.kill()
        os.close(main)
    return process.returncode, said.decode(errors="replace")


@pytest.mark.parametrize(("answer", "moved"), [(b"y\n", True), (b"\n", False)], ids=["yes", "no"])
def test_on_a_terminal_a_command_offers_to_move_a_damaged_database_aside(
    cli_command: list[str], cli_env: dict[str, str], state_db: Path, answer: bytes, moved: bool
) -> None:
    state_db.parent.mkdir(parents=True)
    state_db.write_bytes(b"not a database\n" * 100)
    code, said = _on_a_terminal(cli_command, cli_env, answer, "runs")
    assert code == REFUSED and "Traceback" not in said and "Move it aside now" in said
    kept = list(state_db.parent.glob("state.db.damaged-*"))
    assert bool(kept) is moved and state_db.exists() is not moved
    if moved:
        assert kept[0].read_bytes() == b"not a database\n" * 100 and "run the command again" in said


@pytest.mark.anyio
async def test_compact_drops_finished_runs_bodies_and_shrinks_the_file(
    cli_command: list[str], cli_env: dict[str, str], engine: Engine, state_db: Path, project_dir: Path
) -> None:
    (project_dir / "big.txt").write_text("line of the file\n" * 3000)
    use_backend(engine, ScriptedBackend().reply(
        *(files_answer({"big.txt": f"{n}\n" + "line of the file\n" * 3000}) for n in range(3))))
    runs = [(await engine.delegate(task=f"t{n}", output_files=["big.txt"]))["run_id"] for n in range(3)]
    engine.close()
    kept = _cli(cli_command, cli_env, "db", "compact", "--json")  # the default policy: a month, 100 MB
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["runs_compacted"] == 0
    done = _cli(cli_command, cli_env, "db", "compact", "--all")
    assert done.returncode == 0, done.stderr
    assert "3 finished run(s) compacted (every finished run's bodies dropped)" in done.stdout
    assert state_db.stat().st_size < 3 * len("line of the file\n" * 3000)  # 3 runs of 3 copies each, before
    shown = _cli(cli_command, cli_env, "run", runs[0], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["compacted_at"] is not None
    bad = _cli(cli_command, cli_env, "db", "compact", "--keep-days", "-1")
    assert bad.returncode == 2 and "--keep-days" in bad.stderr
