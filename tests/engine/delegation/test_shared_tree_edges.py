"""Outputs whose path changes under a run (issue 19 points 6 and 7), whole delegations through the engine on real
files: a directory symlink put on an output's way during the run never redirects a write into `.git/hooks/` or
`.claude/settings.local.json`, and a directory, FIFO or socket put where an output was ends the run in a reported
conflict (never stuck in `rolling_back`, never blocked on a FIFO). The kill -9 + resume case is in
test_shared_tree_edges_kill9.py."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.delegation.metrics import read_log
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend

pytestmark = pytest.mark.anyio


def _git_init(root: Path) -> None:
    subprocess.run(["git", "init", "-q", str(root)], check=True)


async def _while_generating(engine: Engine, answer: dict[str, str], outputs: list[str], change: Callable[[], None],
                            *, allow_config_writes: bool = False) -> dict[str, Any]:
    """Delegate, and `change` the tree while the model generates (after the bases are journaled)."""
    backend = ScriptedBackend().reply(files_answer(answer))
    backend.block = anyio.Event()
    use_backend(engine, backend)
    with anyio.fail_after(20):
        async with engine.background():
            started = await engine.delegate(task="t", output_files=outputs, max_attempts=3, wait=0,
                                            allow_config_writes=allow_config_writes)
            await backend.wait_active(1)
            change()
            backend.block.set()
            return await engine.result(started["run_id"], wait=20)


@pytest.mark.answer_form_json
async def test_a_directory_symlink_put_on_the_way_during_a_run_never_redirects_a_write_into_git_hooks(
    engine: Engine, project_dir: Path
) -> None:
    _git_init(project_dir)
    (project_dir / "scripts").mkdir()
    (project_dir / "scripts" / "lint.sh").write_text("echo lint\n")

    def swap() -> None:  # the new file's base is "absent", and so is .git/hooks/pre-commit: only the path tells
        shutil.rmtree(project_dir / "scripts")
        (project_dir / "scripts").symlink_to(".git/hooks")

    result = await _while_generating(engine, {"scripts/pre-commit": "touch PWNED\n", "b.py": "b\n"},
                                     ["scripts/pre-commit", "b.py"], swap)
    assert result["state"] == "failed"
    assert [(c["path"], c["found"], c["during"]) for c in result["conflicts"]] == [
        ("scripts/pre-commit", "redirected", "writing")]
    assert "redirected (a symlink now leads it out of the project or to a protected path)" in result["error"]
    assert not (project_dir / ".git" / "hooks" / "pre-commit").exists()
    assert not (project_dir / "b.py").exists()  # nothing of the attempt was written
    assert not [p for p in (project_dir / ".git" / "hooks").iterdir() if "local-llm" in p.name]
    assert read_log(engine.project.delegation_log).records[-1]["conflicts"] == result["conflicts"]


@pytest.mark.answer_form_json
async def test_a_directory_symlink_put_on_the_way_never_redirects_a_write_into_claude_settings(
    engine: Engine, project_dir: Path
) -> None:
    (project_dir / ".claude").mkdir()
    (project_dir / "conf").mkdir()

    def swap() -> None:
        (project_dir / "conf").rmdir()
        (project_dir / "conf").symlink_to(".claude")

    result = await _while_generating(engine, {"conf/settings.local.json": '{"permissions": {"allow": ["Bash"]}}'},
                                     ["conf/settings.local.json"], swap)
    assert result["state"] == "failed"
    assert [(c["path"], c["found"]) for c in result["conflicts"]] == [("conf/settings.local.json", "redirected")]
    assert not (project_dir / ".claude" / "settings.local.json").exists()


@pytest.mark.answer_form_json
async def test_with_allow_config_writes_the_same_redirect_into_claude_settings_is_written(
    engine: Engine, project_dir: Path
) -> None:
    (project_dir / ".claude").mkdir()
    (project_dir / ".claude" / "settings.local.json").write_text("{}\n")
    (project_dir / "conf").symlink_to(".claude")
    result = await _while_generating(engine, {"conf/settings.local.json": '{"x": 1}\n'},
                                     ["conf/settings.local.json"], lambda: None, allow_config_writes=True)
    assert result["state"] == "done", result["error"]
    assert (project_dir / ".claude" / "settings.local.json").read_text() == '{"x": 1}\n'


@pytest.mark.answer_form_json
async def test_a_directory_symlink_leading_out_of_the_project_during_a_run_is_never_written_through(
    engine: Engine, project_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (project_dir / "lib").mkdir()

    def swap() -> None:
        (project_dir / "lib").rmdir()
        (project_dir / "lib").symlink_to(outside)

    result = await _while_generating(engine, {"lib/x.py": "x\n"}, ["lib/x.py"], swap)
    assert result["state"] == "failed"
    assert [(c["path"], c["found"]) for c in result["conflicts"]] == [("lib/x.py", "redirected")]
    assert list(outside.iterdir()) == []


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _socket(path: Path) -> None:
    path.unlink()
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()  # the socket file stays


def _device(path: Path) -> None:
    path.unlink()
    try:
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers: reading it would "succeed"
    except PermissionError:
        pytest.skip("this machine does not let the test make a device node")


@pytest.mark.answer_form_json
@pytest.mark.parametrize("make", [_fifo, _directory, _socket, _device], ids=["fifo", "directory", "socket", "device"])
async def test_an_output_replaced_by_something_not_a_regular_file_while_generating_is_a_conflict(
    engine: Engine, project_dir: Path, make: Callable[[Path], None]
) -> None:
    (project_dir / "a.py").write_text("base\n")
    result = await _while_generating(engine, {"a.py": "new\n"}, ["a.py"], lambda: make(project_dir / "a.py"))
    assert result["state"] == "failed"
    assert [(c["path"], c["found"], c["during"]) for c in result["conflicts"]] == [("a.py", "not_a_file", "writing")]
    assert "not a regular file" in result["error"]


@pytest.mark.parametrize(("target", "replace"), [("a.py", "rm a.py && mkdir a.py"), ("a.py", "rm a.py && mkfifo a.py"),
                                                 ("n.py", "rm n.py && mkfifo n.py")],
                         ids=["directory", "fifo", "fifo-at-a-created-file"])
@pytest.mark.answer_form_json
async def test_an_output_replaced_during_verify_ends_the_run_failed_never_stuck_in_rolling_back(
    engine: Engine, project_dir: Path, target: str, replace: str
) -> None:
    (project_dir / "a.py").write_text("base a\n")
    (project_dir / "c.py").write_text("base c\n")
    use_backend(engine, ScriptedBackend().reply(files_answer({"a.py": "run a\n", "c.py": "run c\n", "n.py": "n\n"})))
    with anyio.fail_after(20):  # a FIFO opened for reading would block here (and the event loop) for good
        result = await engine.delegate(task="t", output_files=["a.py", "c.py", "n.py"], verify=f"{replace}; exit 1",
                                       max_attempts=1)
    assert result["state"] == "failed"
    assert [(c["path"], c["found"], c["during"]) for c in result["conflicts"]] == [
        (target, "not_a_file", "rolling_back")]
    assert (project_dir / "c.py").read_text() == "base c\n"  # the other files are rolled back
    if target != "a.py":
        assert (project_dir / "a.py").read_text() == "base a\n"
    events = [e.event for e in engine.store.events(result["run_id"])]
    assert "rollback_error" not in events and events[-1] == "rolled_back"


async def test_a_fifo_put_at_an_output_before_the_prompt_is_packed_fails_the_run_with_a_reason(
    engine: Engine, project_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project_dir / "a.py").write_text("base\n")
    release = tmp_path / "release"
    monkeypatch.setenv("LOCAL_LLM_TEST_PAUSE_IN", "delegating")
    monkeypatch.setenv("LOCAL_LLM_TEST_PAUSE_FILE", str(release))
    use_backend(engine, ScriptedBackend())
    with anyio.fail_after(20):
        async with engine.background():
            started = await engine.delegate(task="t", output_files=["a.py"], wait=0)
            while engine.store.get(started["run_id"]).state != "delegating":
                await anyio.sleep(0.02)  # the run waits on the release file (another process's kind of signal)
            _fifo(project_dir / "a.py")
            release.touch()
            result = await engine.result(started["run_id"], wait=20)
    assert result["state"] == "failed"
    assert "'a.py' is now a FIFO" in result["error"]


@pytest.mark.parametrize("name", ["a" * 252 + ".py", "é" * 116 + ".py", "b" * 228 + ".py"],
                         ids=["255-bytes", "235-bytes-utf8", "231-bytes"])
@pytest.mark.answer_form_json
async def test_an_output_name_the_checks_accept_up_to_255_bytes_is_written_and_rolled_back(
    engine: Engine, project_dir: Path, name: str
) -> None:
    assert len(name.encode()) <= 255
    (project_dir / name).write_text("base\n")
    use_backend(engine, ScriptedBackend().reply(files_answer({name: "one\n"}), files_answer({name: "two\n"})))
    with anyio.fail_after(20):
        done = await engine.delegate(task="t", output_files=[name], max_attempts=1)
        assert done["state"] == "done", done["error"]
        assert (project_dir / name).read_text() == "one\n"
        failed = await engine.delegate(task="t", output_files=[name], verify="exit 1", max_attempts=1)
    assert failed["state"] == "failed" and failed["conflicts"] == []
    assert (project_dir / name).read_text() == "one\n"  # rolled back to what it held before the second run
    assert sorted(p.name for p in project_dir.iterdir() if p.name != ".claude") == [name]  # no temp file left
