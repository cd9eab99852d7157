"""`local-llm delegate` stopped by SIGTERM at seeded random instants around the start of its verify command (the
run is held before verify by the test pause hook, released, then signalled 0-80 ms later: before, during and after
the spawn), sometimes a second time a few milliseconds later: no process the command started survives. Ollama is the
test double (engine/testing/ollama_double)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from engine import Project
from engine.store.db import Store
from engine.testing.ollama_double import OllamaDouble
from engine.testing.scripted import files_answer
from tests.engine.delegation.test_verify import processes_marked

SIGNALS = 6


def _verifying(project: Path, count: int) -> bool:
    """True once `count` runs are in `verifying` (held there by the pause hook)."""
    db = Project.resolve(project).state_db
    if not db.exists():
        return False
    with Store(db) as store:
        return sum(r.state == "verifying" for r in store.machines(kind="delegation")) >= count


@pytest.mark.answer_form_json
def test_sigterm_at_any_instant_of_verify_starting_leaves_no_process_behind(
    cli_command: list[str], ollama_double: OllamaDouble, project_dir: Path,
) -> None:
    ollama_double.responder = lambda body: files_answer({p: "new\n" for p in (f"out{i}.txt" for i in range(SIGNALS))})
    env = {**os.environ, "LOCAL_LLM_PROJECT": str(project_dir), "OLLAMA_HOST": ollama_double.url}
    enabled = subprocess.run([*cli_command, "enable", "--backend", "ollama", "--llm", "deepseek-coder:6.7b"], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert enabled.returncode == 0, enabled.stderr
    rng = random.Random(19)
    mark = f"LOCAL_LLM_LEAK_{uuid.uuid4().hex}"
    release = project_dir / "release"
    codes: list[int] = []
    for i in range(SIGNALS):
        release.unlink(missing_ok=True)
        run_env = {**env, mark: str(i), "LOCAL_LLM_TEST_PAUSE_IN": "verifying",
                   "LOCAL_LLM_TEST_PAUSE_FILE": str(release)}
        process = subprocess.Popen(
            [*cli_command, "delegate", "x", "--output", f"out{i}.txt", "--verify", "sleep 60 & sleep 60 & wait",
             "--json"], env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            hang_guard = time.monotonic() + 120  # the CLI starts and generates first (slow under load)
            while not _verifying(project_dir, i + 1):
                assert time.monotonic() < hang_guard, "the run never reached verifying"
                time.sleep(0.02)  # another process's store: nothing to wait on but the file
            release.touch()
            time.sleep(rng.uniform(0, 0.08))
            process.send_signal(signal.SIGTERM)
            if i % 2:  # a second one while the first one's clean-up runs must not end the process by default action
                time.sleep(rng.uniform(0.005, 0.05))
                process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        codes.append(process.returncode)
        assert "Traceback" not in stderr, stderr
    deadline = time.monotonic() + 5  # SIGKILL is asynchronous: a killed child may take a moment to go
    while (alive := processes_marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert sorted(set(alive.values())) == []
    assert codes == [128 + signal.SIGTERM] * SIGNALS
