"""A batch template's edges (engine/delegation/templates.py, issue 19 point 5 and the glob shape of point 4): values
from file names reach `sh -c` quoted, a template that would unquote them is refused, and the glob lists only files
inside the project, through symlink loops in bounded time, off the event loop. Real files, real symlinks, a real
`sh` running the expanded verify commands."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from engine import Engine
from engine.delegation import batch_requests
from engine.delegation.batch_requests import expand_template
from engine.delegation.templates import fill, project_glob, shell_placeholder_problems
from engine.errors import InvalidArgument
from engine.testing.scripted import ScriptedBackend, files_answer, use_backend

HOSTILE = "a$(touch PWNED)`touch PWNED2`;touch PWNED3 'q\" b.py"


def _write(root: Path, relative: str, text: str = "x = 1\n") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_file_name_in_verify_reaches_the_shell_as_one_word_and_runs_nothing(tmp_path: Path) -> None:
    path = f"src/{HOSTILE}"
    command = fill("printf '%s|' {path} {name} {stem} {dir} tests/test_{stem}.py", path, shell=True)
    ran = subprocess.run(["sh", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=True)
    stem = HOSTILE.removesuffix(".py")
    assert ran.stdout == f"{path}|{HOSTILE}|{stem}|src|tests/test_{stem}.py|"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("PWNED")]


def test_text_fields_other_than_verify_get_the_plain_values() -> None:
    assert fill("tests for {path} ({dir}/{stem})", "src/a b.py") == "tests for src/a b.py (src/a b)"
    assert fill("{dir}", "top.py", shell=True) == "''"


@pytest.mark.parametrize(("command", "problem"), [
    ("pytest '{path}'", "{path} inside single quotes"),
    ('pytest "tests/test_{stem}.py"', "{stem} inside double quotes"),
    ("pytest $'{name}'", "{name} inside $'...' quotes"),
    ("pytest \\{path}", "{path} after a backslash"),
    ("echo `cat {path}`", "{path} inside backquotes"),
    ("cat <<EOF\n{path}\nEOF\npytest", "{path} inside a here-document"),
    ("cat <<-'END'\n\t{dir}\n\tEND\n", "{dir} inside a here-document"),
    ('test -n "$(cat {path})"', "{path} inside double quotes"),  # safe in fact, refused: simpler to say than parse
])
def test_a_placeholder_inside_quotes_of_the_template_own_is_a_problem(command: str, problem: str) -> None:
    assert shell_placeholder_problems(command) == [problem]


@pytest.mark.parametrize("command", [
    "pytest -q tests/test_{stem}.py",
    "cd {dir} && python -m py_compile {name} # '{path}' in a comment runs nothing",
    "echo 'done' && ruff check {path} \"$HOME\"",
    "cat <<EOF\nliteral\nEOF\npytest {path}",
    "test -n $(cat {path}) || pytest {path}",
])
def test_a_placeholder_in_plain_text_is_fine(command: str) -> None:
    assert shell_placeholder_problems(command) == []


def test_a_template_that_quotes_a_placeholder_itself_is_refused_naming_it(tmp_path: Path) -> None:
    _write(tmp_path, "src/a.py")
    with pytest.raises(InvalidArgument) as caught:
        expand_template(tmp_path, {"task": "t", "output": "t_{stem}.py", "verify": "pytest \"t_{stem}.py\""},
                        "src/*.py")
    assert caught.value.field == "template.verify"
    assert "{stem} inside double quotes" in str(caught.value) and "pytest tests/test_{stem}.py" in str(caught.value)


def test_the_readme_example_expanded_over_a_hostile_name_runs_no_command_of_the_name(tmp_path: Path) -> None:
    _write(tmp_path, f"src/{HOSTILE}")
    _write(tmp_path, "src/plain.py")
    runs = expand_template(tmp_path, {"task": "Write pytest tests for {path}", "task_type": "test",
                                      "output": "tests/test_{stem}.py", "verify": "ls tests/test_{stem}.py"},
                           "src/**/*.py")
    assert [r["context_files"] for r in runs] == [[f"src/{HOSTILE}"], ["src/plain.py"]]
    for run in runs:
        _write(tmp_path, run["output_files"][0]["path"])
        ran = subprocess.run(["sh", "-c", run["verify"]], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert ran.returncode == 0, ran.stderr
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("PWNED")]


def test_a_glob_lists_only_regular_files_inside_the_project(tmp_path: Path) -> None:
    root, outside = tmp_path / "project", tmp_path / "outside"
    _write(root, "src/a.py")
    _write(root, "src/deep/b.py")
    _write(root, "src/.hidden.py")
    _write(outside, "secret.py")
    (root / "src" / "out").symlink_to(outside)
    (root / "src" / "outfile.py").symlink_to(outside / "secret.py")
    (root / "src" / "alias.py").symlink_to(root / "src" / "a.py")
    os.mkfifo(root / "src" / "pipe.py")
    assert project_glob(root, "src/**/*.py") == ["src/a.py", "src/alias.py", "src/deep/b.py"]
    assert project_glob(root, "src/*.py") == ["src/a.py", "src/alias.py"]
    assert project_glob(root, "src/out/*.py") == []  # a named symlink leading out is not followed out
    assert project_glob(root, "src/.*.py") == ["src/.hidden.py"]
    for pattern in ("../outside/*.py", "/etc/*", "src/../../outside/*.py"):
        with pytest.raises(InvalidArgument) as caught:
            project_glob(root, pattern)
        assert caught.value.field == "glob"


def test_a_glob_through_symlink_loops_ends_within_two_seconds(tmp_path: Path) -> None:
    _write(tmp_path, "src/a.py")
    for name in ("loop1", "loop2", "loop3"):
        (tmp_path / "src" / name).symlink_to(tmp_path / "src")  # each one a loop back to src
    (tmp_path / "src" / "up").symlink_to(tmp_path)
    started = time.monotonic()
    found = project_glob(tmp_path, "**/*.py")
    assert time.monotonic() - started < 2.0  # the old glob never ended here (3 loops: 3^depth directories)
    assert found == ["src/a.py"]
    assert project_glob(tmp_path, "src/loop1/*.py") == ["src/loop1/a.py"]  # a named link inside is followed once


def test_a_glob_wider_than_the_limit_is_refused_with_how_to_narrow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.delegation import templates

    monkeypatch.setattr(templates, "MAX_GLOB_ENTRIES", 10)
    for i in range(12):
        _write(tmp_path, f"src/m{i}.py")
    with pytest.raises(InvalidArgument, match="at most 10 files and directories; narrow it"):
        project_glob(tmp_path, "**/*.py")


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_batch_template_expands_its_glob_off_the_event_loop(
    engine: Engine, project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(project_dir, "src/a.py")
    for name in ("loop1", "loop2"):
        (project_dir / "src" / name).symlink_to(project_dir / "src")
    threads: list[bool] = []
    real = batch_requests.expand_template

    def traced(root: Path, template: object, pattern: object) -> list[dict[str, Any]]:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(root, template, pattern)

    monkeypatch.setattr(batch_requests, "expand_template", traced)
    use_backend(engine, ScriptedBackend().reply(files_answer({"tests/test_a.py": "def test_a():\n    pass\n"})))
    with anyio.fail_after(20):
        view = await engine.batch({"template": {"task": "tests for {path}", "output": "tests/test_{stem}.py",
                                                "verify": "test -s tests/test_{stem}.py"}, "glob": "**/*.py"})
    assert threads == [False]
    assert (view["state"], view["counts"]) == ("finished", {"done": 1}), view
    assert (project_dir / "tests" / "test_a.py").exists()


@pytest.mark.answer_form_json
@pytest.mark.anyio
async def test_a_batch_over_a_hostile_file_name_runs_its_verify_without_running_the_name(
    engine: Engine, project_dir: Path
) -> None:
    name = "a$(touch PWNED).py"
    _write(project_dir, f"src/{name}")
    output = "tests/test_a$(touch PWNED).py"
    use_backend(engine, ScriptedBackend().reply(files_answer({output: "def test_a():\n    pass\n"})))
    with anyio.fail_after(20):
        view = await engine.batch({"template": {"task": "tests for {path}", "output": "tests/test_{stem}.py",
                                                "verify": "test -s tests/test_{stem}.py && echo {name}"},
                                   "glob": "src/*.py"})
    assert (view["state"], view["counts"]) == ("finished", {"done": 1}), view
    assert (project_dir / output).exists() and not (project_dir / "PWNED").exists()
