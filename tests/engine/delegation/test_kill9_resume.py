"""A delegation process killed with SIGKILL in each state is finished correctly by `local-llm resume`.

Everything is real: the `local-llm` CLI in subprocesses, the Ollama test double over HTTP, the SQLite journal. The
process is held in a state by the runner's test-only pause hook (LOCAL_LLM_TEST_PAUSE_IN / _FILE), by a delayed
reply from the double (generation in flight) or by a verify command that waits for a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from engine.delegation.metrics import read_log
from engine.project import Project
from engine.store.db import MachineRecord, Store
from engine.testing.ollama_double import Fault, OllamaDouble
from engine.testing.scripted import files_answer

GOOD = {"a.txt": "good a\n", "b.txt": "good b\n"}
BAD = {"a.txt": "bad a\n", "b.txt": "bad b\n"}
ORIGINAL_A = b"original a\r\n\xe2\x9c\x93 no newline"


@dataclass
class Case:
    state: str
    end: str
    generations: int
    hook: bool = True
    delay: bool = False
    replies: list[dict[str, str]] = field(default_factory=list)
    max_attempts: int = 2
    blocking_verify: bool = False


CASES = [
    Case("pending", "done", 1),
    Case("delegating", "done", 1, hook=False, delay=True),
    Case("writing", "done", 1),
    Case("verifying", "done", 1, hook=False, blocking_verify=True),
    Case("retrying", "done", 2, replies=[BAD]),
    Case("rolling_back", "failed", 1, replies=[BAD], max_attempts=1),
]


def _cli(cli_command: list[str], env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cli_command, *args], env=env, capture_output=True, check=False, text=True, timeout=60)


def _runs(store: Store) -> list[MachineRecord]:
    return store.machines(kind="delegation")


@pytest.mark.answer_form_json
@pytest.mark.anyio
@pytest.mark.parametrize("case", CASES, ids=[c.state for c in CASES])
async def test_a_run_killed_in_each_state_resumes_to_a_correct_end(
    case: Case, ollama_double: OllamaDouble, project_dir: Path, cli_command: list[str], tmp_path: Path
) -> None:
    env = {**os.environ, "LOCAL_LLM_PROJECT": str(project_dir), "OLLAMA_HOST": ollama_double.url,
           "PYTHONUNBUFFERED": "1"}
    enabled = _cli(cli_command, env, "enable", "--backend", "ollama", "--llm", "deepseek-coder:6.7b")
    assert enabled.returncode == 0, enabled.stderr
    ollama_double.responder = lambda body: files_answer(GOOD)
    for reply in case.replies:
        ollama_double.reply(files_answer(reply))
    (project_dir / "a.txt").write_bytes(ORIGINAL_A)
    release = tmp_path / "release"
    verify = "grep -q good a.txt && grep -q good b.txt"
    if case.blocking_verify:
        verify = f"echo ran >> verify.log; while [ ! -e {release} ]; do sleep 0.05; done; {verify}"
    if case.delay:
        ollama_double.fault(Fault.delay(60, paths=["/api/chat"]))
    run_env = dict(env)
    if case.hook:
        run_env.update({"LOCAL_LLM_TEST_PAUSE_IN": case.state, "LOCAL_LLM_TEST_PAUSE_FILE": str(release)})
    chats_before = len(ollama_double.bodies("/api/chat"))

    proc = subprocess.Popen(
        [*cli_command, "delegate", "write a and b", "--output", "a.txt", "--output", "b.txt", "--verify", verify,
         "--max-attempts", str(case.max_attempts), "--json"],
        env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    store = Store(Project.resolve(project_dir).state_db)
    try:
        with anyio.fail_after(30):
            while True:
                assert proc.poll() is None, proc.communicate()
                runs = _runs(store)
                if runs and runs[0].state == case.state:
                    if case.state == "writing" and (project_dir / "a.txt").read_bytes() == ORIGINAL_A:
                        pass  # wait until the first file is written: the crash lands between two writes
                    elif case.state == "rolling_back" and (project_dir / "a.txt").read_bytes() != ORIGINAL_A:
                        pass  # wait until the first file is restored
                    elif (case.blocking_verify and not (project_dir / "verify.log").exists()
                          or case.delay and len(ollama_double.bodies("/api/chat")) == chats_before):
                        pass
                    else:
                        break
                await anyio.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)  # reaped: a zombie would still look like a live owner
        run_id = _runs(store)[0].id
        assert store.get(run_id).state == case.state
        release.touch()

        resumed = _cli(cli_command, env, "resume", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["resumed"] == [run_id]

        record = store.get(run_id)
        events = [e.event for e in store.events(run_id)]
        assert record.state == case.end, (events, record.data.get("error"))
        assert events.count("start") == 1
        assert events.count("generated") == case.generations
        assert events.count("recover") == 1
        if case.end == "done":
            assert (project_dir / "a.txt").read_text() == GOOD["a.txt"]
            assert (project_dir / "b.txt").read_text() == GOOD["b.txt"]
        else:
            assert (project_dir / "a.txt").read_bytes() == ORIGINAL_A
            assert not (project_dir / "b.txt").exists()
        if case.blocking_verify:
            assert (project_dir / "verify.log").read_text() == "ran\nran\n"  # verify was run again
        assert not [p.name for p in project_dir.iterdir() if p.name.endswith(".tmp")]  # no half-written file

        # A finished run is never run again: a second resume finds nothing and changes nothing.
        again = _cli(cli_command, env, "resume", "--json")
        assert again.returncode == 0 and json.loads(again.stdout)["resumed"] == []
        assert [e.event for e in store.events(run_id)] == events
        logged = [r for r in read_log(Project.resolve(project_dir).delegation_log).records if r.get("run_id") == run_id]
        assert len(logged) == 1 and logged[0]["state"] == case.end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        release.touch()
        store.close()
