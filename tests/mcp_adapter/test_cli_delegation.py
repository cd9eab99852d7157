from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from engine import Engine, Project
from engine.store.db import Store
from engine.testing.ollama_double import OllamaDouble
from engine.testing.scripted import files_answer
from mcp_adapter.cli.exit_codes import REFUSED
from tests.markers import needs_embedded


def _cli(
    cli_command: list[str], env: dict[str, str], *args: str, timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_command, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture
def ollama_env(ollama_double: OllamaDouble, project_dir: Path, cli_command: list[str]) -> dict[str, str]:
    env = {**os.environ, "LOCAL_LLM_PROJECT": str(project_dir), "OLLAMA_HOST": ollama_double.url}
    enabled = _cli(cli_command, env, "enable", "--backend", "ollama", "--llm", "deepseek-coder:6.7b")
    assert enabled.returncode == 0, enabled.stderr
    return env


def test_analyze_prints_the_seeds_example_as_delegate(cli_command: list[str], cli_env: dict[str, str]) -> None:
    out = _cli(cli_command, cli_env, "analyze", "Generate Express CRUD routes for User model",
               "--file", "models/user.js", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["recommendation"] == "delegate" and result["score"] > 0.6
    assert {r["signal"] for r in result["reasons"]} == {"pattern-based generation"}  # --file is context
    out = _cli(cli_command, cli_env, "analyze", "Generate Express CRUD routes for User model",
               "--output-file", "models/user.js", "--json")
    assert {r["signal"] for r in json.loads(out.stdout)["reasons"]} == {"pattern-based generation",
                                                                        "single output file"}
    text = _cli(cli_command, cli_env, "analyze", "Design the auth layer")
    assert text.stdout.startswith("keep") and "security-related" in text.stdout


@pytest.mark.answer_form_json
def test_delegate_writes_verifies_and_prints_the_result(
    cli_command: list[str], ollama_env: dict[str, str], ollama_double: OllamaDouble, project_dir: Path
) -> None:
    (project_dir / "user.py").write_text("class User: ...\n")
    ollama_double.reply(files_answer({"routes.py": "ROUTES = ['/users']\n"}))
    out = _cli(cli_command, ollama_env, "delegate", "Generate CRUD routes", "--context", "user.py",
               "--output", "routes.py=the route table", "--verify", "python3 -c 'import routes'", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["state"] == "done" and result["verification"]["passed"]
    assert (project_dir / "routes.py").read_text() == "ROUTES = ['/users']\n"
    assert "routes.py: the route table" in ollama_double.bodies("/api/chat")[-1]["messages"][1]["content"]
    human = _cli(cli_command, ollama_env, "run", result["run_id"])
    assert "done" in human.stdout and "written" in human.stdout


@pytest.mark.answer_form_json
def test_think_reaches_a_thinking_model_and_the_result_counts_its_thinking(
    cli_command: list[str], ollama_env: dict[str, str], ollama_double: OllamaDouble, project_dir: Path
) -> None:
    ollama_double.models["deepseek-coder:6.7b"].capabilities = ("completion", "thinking")
    ollama_double.reply(files_answer({"a.py": "x = 1\n"}), thinking="I will write one line.")
    out = _cli(cli_command, ollama_env, "delegate", "Write a.py", "--output", "a.py", "--think", "low")
    assert out.returncode == 0, out.stderr
    assert ollama_double.bodies("/api/chat")[-1]["think"] == "low"
    assert "(5 thinking)" in out.stdout
    bad = _cli(cli_command, ollama_env, "delegate", "Write b.py", "--output", "b.py", "--think", "lots")
    assert bad.returncode == 2 and "--think" in bad.stderr


@pytest.mark.answer_form_json
def test_a_delegation_that_fails_verification_exits_nonzero_and_shows_the_output(
    cli_command: list[str], ollama_env: dict[str, str], ollama_double: OllamaDouble, project_dir: Path
) -> None:
    ollama_double.responder = lambda body: files_answer({"x.py": "raise SystemExit('nope 17')\n"})
    out = _cli(cli_command, ollama_env, "delegate", "x", "--output", "x.py", "--verify", "python3 x.py",
               "--max-attempts", "2")
    assert out.returncode == 1
    assert "failed after 2 attempt(s)" in out.stdout and "nope 17" in out.stdout
    assert not (project_dir / "x.py").exists()


def test_delegate_refuses_a_path_outside_the_project_naming_the_field(
    cli_command: list[str], cli_env: dict[str, str]
) -> None:
    out = _cli(cli_command, cli_env, "delegate", "x", "--output", "../up.py")
    assert out.returncode == REFUSED
    assert "output_files[0].path: expected a relative path inside the project" in out.stderr
    assert out.stdout == ""


@pytest.mark.answer_form_json
def test_configuration_is_written_only_with_allow_config_writes(
    cli_command: list[str], ollama_env: dict[str, str], ollama_double: OllamaDouble, project_dir: Path
) -> None:
    ollama_double.reply(files_answer({".envrc": "export X=1\n"}))
    refused = _cli(cli_command, ollama_env, "delegate", "x", "--output", ".envrc")
    assert refused.returncode == REFUSED and refused.stdout == ""
    assert "output_files[0].path: '.envrc' is protected by the rule `.envrc`" in refused.stderr
    assert "--allow-config-writes" in refused.stderr and not (project_dir / ".envrc").exists()
    allowed = _cli(cli_command, ollama_env, "delegate", "x", "--output", ".envrc", "--allow-config-writes", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert (project_dir / ".envrc").read_text() == "export X=1\n"
    assert len(ollama_double.bodies("/api/chat")) == 1  # the refused call never reached the model


@pytest.mark.answer_form_json
def test_stats_aggregates_the_log_and_counts_corrupt_lines(
    cli_command: list[str], ollama_env: dict[str, str], project_dir: Path
) -> None:
    for n in range(2):
        assert _cli(cli_command, ollama_env, "delegate", f"task {n}", "--output", f"f{n}.txt").returncode == 0
    _cli(cli_command, ollama_env, "analyze", "Generate CRUD boilerplate")
    with Project.resolve(project_dir).delegation_log.open("a") as log:
        log.write("{broken\n")
    out = _cli(cli_command, ollama_env, "stats", "--json")
    stats = json.loads(out.stdout)
    assert stats["delegated"] == 2 and stats["done"] == 2 and stats["analyzed"] == 1
    assert stats["corrupt_lines"] == 1 and stats["by_model"]["deepseek-coder:6.7b"]["runs"] == 2
    assert "skipped 1 corrupt log line" in _cli(cli_command, ollama_env, "stats").stdout


def test_cancel_ends_a_pending_run_as_cancelled(
    cli_command: list[str], cli_env: dict[str, str], project_dir: Path,
) -> None:
    engine = Engine(Project.resolve(project_dir))
    engine.ctx.runs.create("run-wait", {"task": "x", "task_type": "generate", "output_files": [{"path": "w.txt"}],
                                    "max_attempts": 1, "verify": ""})
    engine.close()
    out = _cli(cli_command, cli_env, "cancel", "run-wait")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "run-wait: cancelled"


@needs_embedded
def test_demo_delegates_on_the_embedded_model_in_a_scratch_project_and_says_how_the_check_went(
    cli_command: list[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The tiny model usually fails the demo's check (it writes prose, not a median function); either way the
    # pipeline ran end to end, exit 0, and the closing message says which it was (test_cli_demo.py has both).
    scratch = tmp_path / "demo"
    env = {k: v for k, v in cli_env.items() if k != "LOCAL_LLM_ANSWER_FORM"}  # the product's default form
    out = _cli(cli_command, env, "demo", "--dir", str(scratch), "--json", timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["project"] == str(scratch) and result["verify_command"].endswith("-B check_stats.py")
    easy = result["easy"]  # issue 22 point 6: the passing delegation passes on the embedded model, and is kept
    assert easy["outcome"] == "passed" and easy["state"] == "done", easy
    assert (scratch / "add.py").stat().st_size > 0 and "passed the check" in easy["message"]
    written = scratch / result["files"][0]["path"]
    if result["outcome"] == "passed":
        assert result["state"] == "done" and result["verification"]["passed"]
        assert written.stat().st_size == result["files"][0]["bytes"] > 0
        assert "passed the check" in result["message"]
    else:
        assert result["outcome"] in ("failed_check", "unusable_answer") and result["state"] == "failed"
        assert not written.exists() and "files are unchanged" in result["message"]
        assert "only proves the plumbing" in result["message"]
    text = _cli(cli_command, cli_env, "run", result["run_id"], "--project", str(scratch))
    assert result["run_id"] in text.stdout and result["state"] in text.stdout


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_cancel_from_another_process_stops_a_running_verify_and_rolls_back(
    cli_command: list[str], ollama_env: dict[str, str], ollama_double: OllamaDouble, project_dir: Path
) -> None:
    (project_dir / "cfg.txt").write_bytes(b"v0\n")
    ollama_double.reply(files_answer({"cfg.txt": "v1\n"}))
    proc = subprocess.Popen(
        [*cli_command, "delegate", "x", "--output", "cfg.txt", "--verify", "touch started; sleep 60", "--json"],
        env=ollama_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        with anyio.fail_after(30):
            while not (project_dir / "started").exists():
                assert proc.poll() is None, proc.communicate()
                await anyio.sleep(0.02)
            store = Store(Project.resolve(project_dir).state_db)
            run_id = store.machines(kind="delegation")[0].id
            store.close()
            cancelled = await anyio.to_thread.run_sync(
                lambda: _cli(cli_command, ollama_env, "cancel", run_id, "--json"))
            out, _ = await anyio.to_thread.run_sync(lambda: proc.communicate(timeout=20))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "cancelled"
    assert proc.returncode == 1 and json.loads(out)["state"] == "cancelled"
    assert (project_dir / "cfg.txt").read_bytes() == b"v0\n"


async def _file_appears(path: Path) -> None:
    while not path.exists() or not path.read_text().strip():
        await anyio.sleep(0.02)  # written by another process: nothing in-process to wait on


@pytest.mark.answer_form_json
@pytest.mark.anyio
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_a_signal_kills_the_verify_group_and_leaves_the_run_for_resume(
    cli_command: list[str], ollama_env: dict[str, str], ollama_double: OllamaDouble, project_dir: Path,
    signum: signal.Signals,
) -> None:
    ollama_double.responder = lambda body: files_answer({"x.txt": "new\n"})
    (project_dir / "x.txt").write_text("old\n")
    pidfile = project_dir / "verify.pid"
    verify = f"test -e release || {{ sleep 60 & echo $! > {pidfile.name}; wait; }}"
    process = subprocess.Popen([*cli_command, "delegate", "x", "--output", "x.txt", "--verify", verify, "--json"],
                               env=ollama_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with anyio.fail_after(120):  # a hang guard: the CLI starts, enables and generates first (slow under load)
            await _file_appears(pidfile)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, stderr
    assert stdout == "" and "Traceback" not in stderr and "local-llm resume" in stderr
    sleeper = int(pidfile.read_text())
    with anyio.fail_after(5):
        while Path(f"/proc/{sleeper}").exists() and Path(f"/proc/{sleeper}/stat").read_text().split()[2] != "Z":
            await anyio.sleep(0.02)
    with Store(Project.resolve(project_dir).state_db) as store:
        [run] = store.machines(kind="delegation")
        events = [e.event for e in store.events(run.id)]
    assert run.state == "verifying" and "cancel" not in events and "rolled_back" not in events
    assert (project_dir / "x.txt").read_text() == "new\n"  # written, not rolled back
    (project_dir / "release").touch()
    resumed = _cli(cli_command, ollama_env, "resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] == [run.id]
    with Store(Project.resolve(project_dir).state_db) as store:
        assert store.get(run.id).state == "done"


def test_batch_reads_its_requests_from_standard_input_and_names_a_bad_file(
    project_dir: Path, cli_command: list[str], cli_env: dict[str, str]
) -> None:
    bad = subprocess.run([*cli_command, "batch", "-"], input="not json", env=cli_env, capture_output=True, check=False,
                         text=True, timeout=60)
    assert bad.returncode == REFUSED and "FILE: expected a JSON list" in bad.stderr
    refused = subprocess.run([*cli_command, "batch", "-"], input=json.dumps([
        {"task": "a", "output_files": ["same.py"]}, {"task": "b", "output_files": ["same.py"]}]),
        env=cli_env, capture_output=True, check=False, text=True, timeout=60)
    assert refused.returncode == REFUSED and "runs[1].output_files[0].path" in refused.stderr
