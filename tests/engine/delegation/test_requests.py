"""engine/delegation/requests.py and the delegate call: bad input is refused before a run exists, naming the field
(issue #10, points 3 and 4)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine, Project
from engine.delegation import service
from engine.delegation.context_files import MAX_CONTEXT_BYTES
from engine.delegation.paths import ProtectedPath
from engine.delegation.requests import (
    MAX_CONTEXT_FILES,
    MAX_DESCRIPTION_BYTES,
    MAX_OUTPUTS,
    MAX_TASK_BYTES,
    MAX_VERIFY_BYTES,
    MAX_VERIFY_TIMEOUT_S,
    check_delegate,
    check_files,
    check_wait,
)
from engine.errors import InvalidArgument
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend
from states import RunData

__all__: list[str] = []

DEADLINE_S = 10.0
VALID: dict[str, Any] = {
    "task": "write it", "task_type": None, "context_files": None, "output_files": ["a.txt"], "verify": None,
    "max_attempts": None, "model": None, "allow_secrets": False, "verify_timeout": None,
}


def _refusal(**changes: Any) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        check_delegate(**{**VALID, **changes})
    return caught.value


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({"task": "fix \ud800 it"}, "task", "valid UTF-8"),
        ({"task": "a\x00b"}, "task", "without NUL bytes"),
        ({"task": "é" * (MAX_TASK_BYTES // 2 + 1)}, "task", f"at most {MAX_TASK_BYTES} bytes"),
        ({"task": "   "}, "task", "non-empty"),
        ({"verify": "pytest \udcff"}, "verify", "valid UTF-8"),
        ({"verify": "true\x00rm -rf /"}, "verify", "without NUL bytes"),
        ({"verify": "x" * (MAX_VERIFY_BYTES + 1)}, "verify", f"at most {MAX_VERIFY_BYTES} bytes"),
        ({"model": "m\x00"}, "model", "without NUL bytes"),
        ({"max_attempts": True}, "max_attempts", "an integer at least 1 and at most 10"),
        ({"max_attempts": "3"}, "max_attempts", "an integer"),
        ({"max_attempts": 2.0}, "max_attempts", "an integer"),
        ({"max_attempts": 11}, "max_attempts", "at most 10"),
        ({"max_attempts": 10**400}, "max_attempts", "at most 10"),
        ({"verify_timeout": float("nan")}, "verify_timeout", "a number more than 0"),
        ({"verify_timeout": float("inf")}, "verify_timeout", "a number"),
        ({"verify_timeout": 0}, "verify_timeout", "more than 0"),
        ({"verify_timeout": MAX_VERIFY_TIMEOUT_S + 1}, "verify_timeout", f"at most {MAX_VERIFY_TIMEOUT_S:g}"),
        ({"verify_timeout": False}, "verify_timeout", "a number"),
        ({"allow_secrets": "no"}, "allow_secrets", "true or false"),
        ({"allow_config_writes": 1}, "allow_config_writes", "true or false"),
        ({"output_files": [str(i) for i in range(MAX_OUTPUTS + 1)]}, "output_files", f"at most {MAX_OUTPUTS}"),
        ({"output_files": [{"path": "a", "description": "d\x00"}]}, "output_files[0].description", "NUL"),
        ({"output_files": [{"path": "a", "description": "d" * (MAX_DESCRIPTION_BYTES + 1)}]},
         "output_files[0].description", f"at most {MAX_DESCRIPTION_BYTES} bytes"),
        ({"context_files": ["c"] * (MAX_CONTEXT_FILES + 1)}, "context_files", f"at most {MAX_CONTEXT_FILES}"),
    ],
)
def test_bad_values_are_refused_naming_the_field_and_the_limit(changes: dict[str, Any], field: str, says: str) -> None:
    refusal = _refusal(**changes)
    assert refusal.field == field and str(refusal).startswith(f"{field}: expected")
    assert says in str(refusal)


@pytest.mark.parametrize("wait", [float("nan"), float("inf"), -1, True, "5", 10**400, 86_401])
def test_a_wait_that_is_not_a_finite_number_of_seconds_is_refused(wait: object) -> None:
    with pytest.raises(InvalidArgument, match=r"^wait: expected a number at least 0 and at most 86400 seconds"):
        check_wait(wait)
    assert check_wait(None) is None and check_wait(0) == 0.0


def _checked(root: Path, **changes: Any) -> Any:
    return check_files(root, check_delegate(**{**VALID, **changes}))


def test_outputs_are_stored_in_their_canonical_spelling(project_dir: Path) -> None:
    request = _checked(project_dir, output_files=["./src//a.py", {"path": "docs\\b.md", "description": "B"}])
    assert request.output_files == [{"path": "src/a.py", "description": ""}, {"path": "docs/b.md", "description": "B"}]


@pytest.mark.parametrize("pair", [["a.txt", "./a.txt"], ["src/a.py", "src\\a.py"], ["src/a.py", "alias/a.py"],
                                  ["src/a.py", "link.py"], ["src//a.py", "alias/./a.py"]])
def test_two_spellings_of_one_file_are_refused_naming_both(project_dir: Path, pair: list[str]) -> None:
    (project_dir / "src").mkdir()
    (project_dir / "alias").symlink_to("src")
    (project_dir / "link.py").symlink_to("src/a.py")
    with pytest.raises(InvalidArgument) as caught:
        _checked(project_dir, output_files=pair)
    assert caught.value.field == "output_files[1].path"
    assert f"output_files[0].path, {pair[0]!r}, is the same file" in str(caught.value)


def test_an_output_inside_another_is_refused_in_either_order(project_dir: Path) -> None:
    # A set of the outputs' directories, not a pairwise search: the whole list is checked in one pass.
    for outputs, index in ((["x/y", "x"], 1), (["x", "x/y/z"], 0), (["alias/q/r", "src/q"], 1)):
        (project_dir / "src").mkdir(exist_ok=True)
        if not (project_dir / "alias").is_symlink():
            (project_dir / "alias").symlink_to("src")
        with pytest.raises(InvalidArgument, match="not a directory of another output") as caught:
            _checked(project_dir, output_files=outputs)
        assert caught.value.field == f"output_files[{index}].path"


def test_context_files_share_one_size_limit(project_dir: Path) -> None:
    half = MAX_CONTEXT_BYTES // 2
    for name in ("a.txt", "b.txt", "c.txt"):
        (project_dir / name).write_text("x" * half)
    assert _checked(project_dir, context_files=["a.txt", "b.txt"]).context_files == ["a.txt", "b.txt"]
    with pytest.raises(InvalidArgument) as caught:
        _checked(project_dir, context_files=["a.txt", "b.txt", "c.txt"])
    assert caught.value.field == "context_files[2]" and "0 left for this one" in str(caught.value)


def test_protected_outputs_are_refused_by_the_request_check_and_the_opt_in_is_kept(project_dir: Path) -> None:
    with pytest.raises(ProtectedPath, match=r"^output_files\[1\]\.path: '\.mcp\.json' is protected"):
        _checked(project_dir, output_files=["a.txt", ".mcp.json"])
    request = _checked(project_dir, output_files=[".mcp.json"], allow_config_writes=True)
    assert request.allow_config_writes is True


def test_runs_written_before_the_opt_in_existed_read_it_as_off() -> None:
    assert RunData.from_json({"task": "old", "output_files": [{"path": "a", "description": ""}]}).allow_config_writes \
        is False


@pytest.mark.anyio
async def test_the_issue_case_a_symlinked_claude_dir_leaves_the_journal_untouched_and_creates_no_run(
    project_dir: Path
) -> None:
    # `.claude` moved to `dotclaude/` and linked back: the journal's real path is dotclaude/workflow/state.db.
    (project_dir / "dotclaude").mkdir()
    (project_dir / ".claude").symlink_to("dotclaude")
    engine = Engine(Project.resolve(project_dir))
    try:
        backend = ScriptedBackend().reply(files_answer({"dotclaude/workflow/state.db": "overwritten"}))
        use_backend(engine, backend)
        engine.list_runs()  # the store opens (and creates state.db) at its first use
        journal = (project_dir / "dotclaude" / "workflow" / "state.db").read_bytes()
        with anyio.fail_after(DEADLINE_S), pytest.raises(ProtectedPath, match="never an output"):
            await engine.delegate(task="write it", output_files=["dotclaude/workflow/state.db"],
                                  allow_config_writes=True)
        assert backend.requests == [] and engine.store.machines(kind="delegation") == []
        assert (project_dir / "dotclaude" / "workflow" / "state.db").read_bytes() == journal
    finally:
        engine.close()


@pytest.mark.anyio
@pytest.mark.parametrize("changes", [{"task": "\udc80"}, {"verify": "ok\udc80"}, {"output_files": ["a\udc80.txt"]},
                                     {"context_files": ["c\udc80.txt"]}, {"verify_timeout": float("nan")}])
async def test_text_that_is_not_utf8_is_refused_before_a_run_exists(engine: Engine, changes: dict[str, Any]) -> None:
    # A lone surrogate in the task used to create the run and leave it stuck in rolling_back for good.
    backend = ScriptedBackend()
    use_backend(engine, backend)
    arguments = {"task": "write it", "output_files": ["a.txt"], **changes}
    with anyio.fail_after(DEADLINE_S), pytest.raises(InvalidArgument):
        await engine.delegate(**arguments)
    assert backend.requests == [] and engine.store.machines(kind="delegation") == []


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_the_file_system_checks_run_in_a_worker_thread(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[threading.Thread] = []
    real = service.check_files

    def spy(root: Path, request: Any) -> Any:
        threads.append(threading.current_thread())
        return real(root, request)

    monkeypatch.setattr(service, "check_files", spy)
    use_backend(engine, ScriptedBackend())
    with anyio.fail_after(DEADLINE_S):
        result = await engine.delegate(task="write it", output_files=["./out//a.txt"])
    assert result["state"] == "done" and (project_dir / "out" / "a.txt").exists()
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
