"""Regressions found by the reliability harness (bench/reliability): each test is the smallest failing case."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

import anyio
import pytest

from engine import Engine
from engine.delegation import metrics, steps
from engine.delegation.context_files import read_text_file
from engine.delegation.paths import resolve_inside, writable_target
from engine.delegation.shared_tree import apply_file, rollback_file
from engine.delegation.steps import INFRASTRUCTURE_RETRIES
from engine.errors import InvalidArgument
from engine.executor.backends.base import BackendError, BackendUnavailable, ModelMissing
from engine.project import Project
from engine.session.lifecycle import SessionBusy
from engine.store.db import MachineRecord, Store
from engine.store.journal import ABSENT, FileWrite, content_hash
from engine.testing.ollama_double import OllamaDouble
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend

pytestmark = pytest.mark.answer_form_json  # the double scripts whole-file JSON answers


@pytest.mark.answer_form_json
@pytest.mark.anyio
@pytest.mark.parametrize("error", [BackendError("Ollama answered 500", retryable=True), BackendUnavailable("busy")])
async def test_a_retryable_backend_error_is_retried_not_aborted_as_an_internal_error(
    engine: Engine, project_dir: Path, error: BackendError
) -> None:
    # R2: the error left the progress task group wrapped in an ExceptionGroup, so `except BackendError` missed it.
    use_backend(engine, ScriptedBackend().reply(error, files_answer({"a.txt": "ok\n"})))
    with anyio.fail_after(10):
        result = await engine.delegate(task="write a", output_files=["a.txt"], max_attempts=2)
    assert result["state"] == "done" and result["attempts"] == 2
    events = [e.event for e in engine.store.events(result["run_id"])]
    assert "generation_failed" in events and "abort" not in events


@pytest.mark.anyio
async def test_a_missing_model_fails_the_run_with_the_pull_hint(engine: Engine) -> None:
    use_backend(engine, ScriptedBackend().reply(ModelMissing("model not found; pull it with `ollama pull m`")))
    with anyio.fail_after(10):
        result = await engine.delegate(task="write a", output_files=["a.txt"], max_attempts=2)
    assert result["state"] == "failed" and "pull it" in result["error"]
    assert "internal error" not in result["error"]


@pytest.mark.parametrize("path", ["n" * 4096, "n" * 256, "a\ud800b.txt", "d/" * 1500 + "f"])
def test_over_long_and_non_utf8_names_are_invalid_arguments_not_os_errors(project_dir: Path, path: str) -> None:
    # R3: ENAMETOOLONG from stat() and UnicodeEncodeError from realpath() reached the client as bare crashes; an
    # output 1500 directories deep was written (and then no shutil.rmtree could delete the project).
    with pytest.raises(InvalidArgument, match=r"^files\[0\]:"):
        resolve_inside(project_dir, path, field="files[0]")
    with pytest.raises(InvalidArgument):
        read_text_file(project_dir, path, field="files[0]")


@pytest.mark.parametrize("path", ["dir", "file.txt/x", ".claude/workflow/state.db", ".claude/workflow/new.txt"])
def test_outputs_that_cannot_be_written_as_files_are_refused(project_dir: Path, path: str) -> None:
    (project_dir / "dir").mkdir()
    (project_dir / "file.txt").write_text("x")
    with pytest.raises(InvalidArgument, match=r"^output_files\[0\]\.path:"):
        writable_target(project_dir, path, field="output_files[0].path")


@pytest.mark.anyio
@pytest.mark.parametrize("outputs", [["0/0", "0"], ["a.txt", "./a.txt"]])
async def test_outputs_that_collide_are_refused_before_a_run_exists(engine: Engine, outputs: list[str]) -> None:
    # R3: ["0/0", "0"] failed half-way through `writing` with NotADirectoryError (an internal error).
    use_backend(engine, ScriptedBackend())
    with pytest.raises(InvalidArgument, match="output_files"):
        await engine.delegate(task="write", output_files=outputs)
    assert engine.store.machines(kind="delegation") == []


def test_a_killed_writes_temp_file_is_removed_by_the_next_write_or_rollback(tmp_path: Path) -> None:
    # R1: a resume killed inside atomic_write (after mkstemp, before the rename) left `.a.txt.<random>.tmp` forever.
    (tmp_path / "a.txt").write_bytes(b"original")
    for leftover in (".a.txt.local-llm-abcd1234.tmp", ".b.txt.local-llm-efgh5678.tmp"):
        (tmp_path / leftover).write_bytes(b"half")
    (tmp_path / ".a.txt.x.local-llm-other.tmp").write_bytes(b"another file's")
    a = FileWrite("a.txt", True, b"original", b"new", 1, "pending", content_hash(b"original"))
    b = FileWrite("b.txt", False, None, b"new b", 1, "written", ABSENT, (content_hash(b"new b"),))
    (tmp_path / "b.txt").write_bytes(b"new b")
    workflow = tmp_path / ".claude" / "workflow"
    assert apply_file(tmp_path, workflow, "run-1", a).done
    assert rollback_file(tmp_path, workflow, "run-1", b).done
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.txt.x.local-llm-other.tmp", "a.txt"]


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_the_log_line_is_appended_before_the_run_is_seen_finished(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # R1: appended after the terminal commit, a kill between the two lost the line for good (nothing resumes a
    # finished run). Now another process sees the run finished only once its line is in the log.
    seen: list[str] = []
    append = metrics.append_record

    def spy(path: Path, record: dict[str, object]) -> None:
        if record.get("event") == "run":
            # A plain reader (another process's view; opening a Store would wait for the write lock held here).
            other = sqlite3.connect(f"file:{engine.project.state_db}?mode=ro", uri=True)
            try:
                seen.append(other.execute("SELECT state FROM machines WHERE id = ?", (record["run_id"],)).fetchone()[0])
            finally:
                other.close()
        append(path, record)

    monkeypatch.setattr(metrics, "append_record", spy)
    use_backend(engine, ScriptedBackend())
    with anyio.fail_after(10):
        result = await engine.delegate(task="write a", output_files=["a.txt"], verify="true")
    assert result["state"] == "done" and seen == ["verifying"]


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_run_resumed_after_a_kill_between_log_and_commit_is_logged_once(
    ollama_double: OllamaDouble, project_dir: Path, cli_command: list[str], tmp_path: Path
) -> None:
    env = {**os.environ, "LOCAL_LLM_PROJECT": str(project_dir), "OLLAMA_HOST": ollama_double.url}
    assert subprocess.run([*cli_command, "enable", "--backend", "ollama", "--llm", "deepseek-coder:6.7b"], env=env,
                          capture_output=True, check=False, timeout=60).returncode == 0
    release = tmp_path / "release"
    proc = subprocess.Popen(
        [*cli_command, "delegate", "write a", "--output", "a.txt", "--verify", "true"],
        env={**env, "LOCAL_LLM_TEST_PAUSE_IN": "verifying", "LOCAL_LLM_TEST_PAUSE_FILE": str(release)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    project = Project.resolve(project_dir)
    store = Store(project.state_db)
    try:
        with anyio.fail_after(30):
            while not (runs := store.machines(kind="delegation")) or runs[0].state != "verifying":
                assert proc.poll() is None
                await anyio.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        run_id = runs[0].id
        # As if the killed process had appended the run's end, then died before its commit.
        metrics.append_record(project.delegation_log, {"event": "run", "run_id": run_id, "state": "done",
                                                       "attempts": 1})
        release.touch()
        resumed = subprocess.run([*cli_command, "resume", "--json"], env=env, capture_output=True, text=True,
                                 timeout=60, check=False)
        assert resumed.returncode == 0, resumed.stderr
        assert store.get(run_id).state == "done"
        lines = [r for r in metrics.read_log(project.delegation_log).records if r.get("run_id") == run_id]
        assert len(lines) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        store.close()


@pytest.mark.anyio
async def test_a_run_waits_for_a_session_another_process_is_starting(
    engine: Engine, ollama_double: OllamaDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    # R4: a server restarted beside another unloaded the dead owner's session, and the runs it resumed found it
    # `starting` (enabled by the first of them) and failed: "the session is starting in another process".
    from engine.store.ownership import _started
    from states import SESSION_ID

    other = subprocess.Popen(["sleep", "30"])
    try:
        token = f"{socket.gethostname()}:{other.pid}:{_started(other.pid)}"
        engine.ctx.sessions.ensure(SESSION_ID)
        engine.ctx.sessions.fire(SESSION_ID, "enable", data={"backend": "ollama", "busy_by": token})
        got: list[object] = []
        busy_answers: list[MachineRecord] = []
        looked_again = anyio.Event()
        take_over_stale = engine.session._take_over_stale

        def counting(record: MachineRecord) -> MachineRecord:
            try:
                return take_over_stale(record)
            except SessionBusy:
                busy_answers.append(record)
                if len(busy_answers) == 2:  # asked again after a busy answer: it waits instead of failing
                    looked_again.set()
                raise

        monkeypatch.setattr(engine.session, "_take_over_stale", counting)

        async def ask() -> None:
            got.append(await engine.session.executor())

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await looked_again.wait()
                assert got == []  # still waiting, not failed
                engine.ctx.sessions.fire(SESSION_ID, "ready", data={
                    "backend": "ollama", "base_url": ollama_double.url, "model": "deepseek-coder:6.7b",
                    "num_ctx": 4096, "keep_alive": "60m", "busy_by": None})
        assert got[0].model == "deepseek-coder:6.7b"
    finally:
        other.kill()
        other.wait()
        await engine.session.drop_backend()


@pytest.mark.anyio
async def test_an_infrastructure_fault_is_generated_again_without_using_an_attempt(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "RETRY_BACKOFF_S", 0.0)
    # Issue 20: a backend behind a gateway that dies mid-stream is the server's fault, not the model's.
    cut = BackendUnavailable("connection cut mid-stream")
    cut.infrastructure = True
    backend = ScriptedBackend().reply(cut, BackendError("gateway answered 502", retryable=True, infrastructure=True),
                                      files_answer({"a.txt": "ok\n"}))
    use_backend(engine, backend)
    with anyio.fail_after(20):
        result = await engine.delegate(task="write a", output_files=["a.txt"], max_attempts=1)
    assert result["state"] == "done" and result["attempts"] == 1
    events = [e.event for e in engine.store.events(result["run_id"])]
    assert events.count("backend_retry") == 2 and "generation_failed" not in events
    assert engine.store.get(result["run_id"]).data["backend_retries"] == 2
    # One route key for every send of the run: a gateway keeps them on one backend.
    keys = {r.route_key for r in backend.requests}
    assert len(keys) == 1 and keys.pop() == result["run_id"].replace(".", "-")


@pytest.mark.anyio
async def test_infrastructure_faults_past_the_bound_use_the_attempt(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "RETRY_BACKOFF_S", 0.0)
    faults = [BackendError("gateway answered 503", retryable=True, infrastructure=True)
              for _ in range(INFRASTRUCTURE_RETRIES + 1)]
    use_backend(engine, ScriptedBackend().reply(*faults, files_answer({"a.txt": "ok\n"})))
    with anyio.fail_after(30):
        result = await engine.delegate(task="write a", output_files=["a.txt"], max_attempts=2)
    assert result["state"] == "done" and result["attempts"] == 2
    events = [e.event for e in engine.store.events(result["run_id"])]
    assert events.count("backend_retry") == INFRASTRUCTURE_RETRIES and events.count("generation_failed") == 1


@pytest.mark.anyio
async def test_a_child_failed_by_the_infrastructure_never_counts_toward_max_failures(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "RETRY_BACKOFF_S", 0.0)
    faults = [BackendError("gateway answered 429", retryable=True, infrastructure=True)
              for _ in range(INFRASTRUCTURE_RETRIES + 1)]
    use_backend(engine, ScriptedBackend().reply(*faults, files_answer({"b.txt": "ok\n"})))
    with anyio.fail_after(30):
        summary = await engine.batch({"runs": [{"task": "write a", "output_files": ["a.txt"]},
                                               {"task": "write b", "output_files": ["b.txt"]}],
                                      "max_attempts": 1, "max_failures": 1}, wait=30)
    first = engine.store.get(f"{summary['batch_id']}.1")
    assert first.state == "failed" and first.data["infrastructure_failure"] is True
    # The failure limit of 1 was not reached: the second child ran.
    assert summary["counts"] == {"failed": 1, "done": 1}
    assert engine.store.get(summary["batch_id"]).data["children_excused"] == [first.id]
