"""A directory symlink put on an output's way between a kill -9 and the resume never redirects the resumed write or
rollback into `.git/hooks/` (issue 19 point 6). Everything is real: the `local-llm` CLI in subprocesses, the Ollama
test double over HTTP, the SQLite journal, git; the process is held after its first file by the runner's test-only
pause hook (as in test_kill9_resume.py), killed, the tree changed, and `local-llm resume` finishes the run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from functools import partial
from pathlib import Path

import anyio
import pytest

from engine.project import Project
from engine.store.db import Store
from engine.testing.ollama_double import OllamaDouble
from engine.testing.scripted import files_answer

ORIGINAL_A = b"original a\n"
HOOK = "echo lint\n"


async def _cli(cli_command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(partial(subprocess.run, [*cli_command, *args], env=env, capture_output=True,
                                                  text=True, timeout=60, check=False))


@pytest.mark.answer_form_json
@pytest.mark.anyio
@pytest.mark.parametrize("state", ["writing", "rolling_back"])
async def test_a_symlink_put_on_the_way_between_kill_and_resume_never_redirects_into_git_hooks(
    state: str, ollama_double: OllamaDouble, project_dir: Path, cli_command: list[str], tmp_path: Path
) -> None:
    await anyio.to_thread.run_sync(partial(subprocess.run, ["git", "init", "-q", str(project_dir)], check=True))
    env = {**os.environ, "LOCAL_LLM_PROJECT": str(project_dir), "OLLAMA_HOST": ollama_double.url,
           "PYTHONUNBUFFERED": "1"}
    enabled = await _cli(cli_command, env, "enable", "--backend", "ollama", "--llm", "deepseek-coder:6.7b")
    assert enabled.returncode == 0
    ollama_double.responder = lambda body: files_answer({"a.txt": "good a\n", "scripts/pre-commit": "touch PWNED\n"})
    (project_dir / "a.txt").write_bytes(ORIGINAL_A)
    (project_dir / "scripts").mkdir()
    if state == "rolling_back":  # the rollback would put this back; while writing, the run creates the file
        (project_dir / "scripts" / "pre-commit").write_text(HOOK)
    release = tmp_path / "release"
    verify = "grep -q good a.txt" if state == "writing" else "exit 1"
    run_env = {**env, "LOCAL_LLM_TEST_PAUSE_IN": state, "LOCAL_LLM_TEST_PAUSE_FILE": str(release)}
    proc = await anyio.to_thread.run_sync(partial(
        subprocess.Popen, [*cli_command, "delegate", "write them", "--output", "a.txt",
                           "--output", "scripts/pre-commit", "--verify", verify, "--max-attempts", "1", "--json"],
        env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    store = Store(Project.resolve(project_dir).state_db)
    try:
        with anyio.fail_after(30):
            while True:  # held after its first file: a.txt written (writing) or restored (rolling_back)
                assert proc.poll() is None, proc.communicate()
                runs = store.machines(kind="delegation")
                first_done = (project_dir / "a.txt").read_bytes() == (b"good a\n" if state == "writing" else ORIGINAL_A)
                if runs and runs[0].state == state and first_done:
                    break
                await anyio.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        run_id = store.machines(kind="delegation")[0].id

        # Between the kill and the resume the directory becomes a link into .git/hooks, where the file now found
        # is what the journal expects: the run's own bytes (rolling_back) or nothing, as its base (writing).
        hook = project_dir / ".git" / "hooks" / "pre-commit"
        if state == "rolling_back":
            shutil.move(project_dir / "scripts" / "pre-commit", hook)
        shutil.rmtree(project_dir / "scripts")
        (project_dir / "scripts").symlink_to(".git/hooks")
        release.touch()
        resumed = await _cli(cli_command, env, "resume", "--json")
        assert resumed.returncode == 0, resumed.stderr

        record = store.get(run_id)
        assert record.state == "failed", record.data.get("error")
        conflicts = record.data["conflicts"]
        found = [(c["path"], c["found"], c["during"]) for c in conflicts]
        assert found == [("scripts/pre-commit", "redirected", state)]
        if state == "writing":
            assert not hook.exists()  # never created through the link
        else:
            assert hook.read_text() == "touch PWNED\n"  # the base was not written back through the link
        assert not [p.name for p in hook.parent.iterdir() if "local-llm" in p.name]
        assert (project_dir / "a.txt").read_bytes() == ORIGINAL_A
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        release.touch()
        store.close()
