"""A batch process killed with SIGKILL while children are mid-write is finished by `local-llm resume`: the batch
resumes and schedules its children, each ends exactly once, and the summary matches the journal.

Real components: the `local-llm` CLI in subprocesses, the Ollama test double over HTTP, the SQLite journal; the
children are held after their first written file by the runner's test-only pause hook."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import anyio
import pytest

from engine.delegation.metrics import read_log
from engine.project import Project
from engine.store.db import Store
from engine.testing.ollama_double import OllamaDouble
from engine.testing.scripted import files_answer

CHILDREN = 5


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_batch_killed_while_children_write_resumes_and_every_child_ends_once(
    ollama_double: OllamaDouble, project_dir: Path, cli_command: list[str], tmp_path: Path
) -> None:
    env = {**os.environ, "LOCAL_LLM_PROJECT": str(project_dir), "OLLAMA_HOST": ollama_double.url,
           "PYTHONUNBUFFERED": "1"}
    enabled = subprocess.run([*cli_command, "enable", "--backend", "ollama", "--llm", "deepseek-coder:6.7b"],
                             env=env, capture_output=True, check=False, text=True, timeout=60)
    assert enabled.returncode == 0, enabled.stderr
    ollama_double.responder = lambda body: files_answer({
        p: "written\n" for p in body["format"]["properties"]["files"]["items"]["properties"]["path"]["enum"]})
    release = tmp_path / "release"
    spec = tmp_path / "batch.json"
    spec.write_text(json.dumps({"runs": [{"task": f"write {i}", "output_files": [f"out{i}.txt"],
                                          "verify": f"test -s out{i}.txt"} for i in range(CHILDREN)],
                                "max_parallel": 2}))
    proc = subprocess.Popen(
        [*cli_command, "batch", str(spec), "--json"],
        env={**env, "LOCAL_LLM_TEST_PAUSE_IN": "writing", "LOCAL_LLM_TEST_PAUSE_FILE": str(release)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    store = Store(Project.resolve(project_dir).state_db)
    try:
        with anyio.fail_after(30):
            while True:
                assert proc.poll() is None, proc.communicate()
                writing = [r for r in store.machines(kind="delegation") if r.state == "writing"]
                if len(writing) == 2 and all((project_dir / r.data["output_files"][0]["path"]).exists()
                                             for r in writing):
                    break
                await anyio.sleep(0.02)  # another process moves: only the store shows it
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)  # reaped: a zombie would still look like a live owner
        (batch,) = store.machines(kind="batch")
        assert batch.state == "running"
        release.touch()

        resumed = subprocess.run([*cli_command, "resume", "--json"], env=env, capture_output=True, text=True,
                                 timeout=60, check=False)
        assert resumed.returncode == 0, resumed.stderr
        report = json.loads(resumed.stdout)
        assert report["batches"] == [batch.id] and report["resumed"] == []  # the batch resumed its children

        batch = store.get(batch.id)
        children = [store.get(c) for c in batch.data["children"]]
        assert batch.state == "finished" and [c.state for c in children] == ["done"] * CHILDREN, \
            [c.data["error"] for c in children]
        for child in children:
            events = [e.event for e in store.events(child.id)]
            assert events.count("start") == 1 and events.count("written") == 1, events
        assert batch.data["counts"] == {"done": CHILDREN}
        assert not [p.name for p in project_dir.iterdir() if p.name.endswith(".tmp")]  # no half-written file
        log = read_log(Project.resolve(project_dir).delegation_log).records
        assert sorted(r["run_id"] for r in log if r["event"] == "run") == sorted(c.id for c in children)
        assert [r["counts"] for r in log if r["event"] == "batch"] == [{"done": CHILDREN}]

        again = subprocess.run([*cli_command, "resume", "--json"], env=env, capture_output=True, check=False, text=True,
                               timeout=60)
        assert again.returncode == 0 and json.loads(again.stdout)["batches"] == []
    finally:
        if proc.poll() is None:
            proc.kill()
        store.close()
