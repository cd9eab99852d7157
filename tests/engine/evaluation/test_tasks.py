"""The suite as data: a task directory is read and checked up front, and every mistake names its file and field."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import InvalidArgument
from engine.evaluation import (
    SuiteError,
    expand_command,
    hidden_lines,
    load_suite,
    load_task,
    prepare_project,
    select_tasks,
)

TASK_TOML = '''
task_type = "generate"
language = "python"
task = "Write two.py with a function two() -> int that returns 2."
verify = "{python} -B -c 'import two'"
hidden_check = "{python} -B {check}/check_two.py"

[[outputs]]
path = "two.py"
description = "Python: def two() -> int"
'''
CHECK = "from two import two\nassert two() == 2, 'two() must return the number two'\n"


def write_task(suite: Path, task_id: str = "gen-two", toml: str = TASK_TOML, *,
               files: dict[str, str] | None = None, check: dict[str, str] | None = None) -> Path:
    root = suite / task_id
    folders = (("files", files or {"notes.txt": "a note\n"}), ("check", check or {"check_two.py": CHECK}))
    for folder, contents in folders:
        for name, text in contents.items():
            (root / folder / name).parent.mkdir(parents=True, exist_ok=True)
            (root / folder / name).write_text(text)
    (root / "task.toml").write_text(toml)
    return root


def test_a_task_directory_reads_into_a_task_with_its_defaults(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path))
    assert (task.id, task.task_type, task.language, task.max_attempts) == ("gen-two", "generate", "python", None)
    assert task.summary == task.task and task.outputs[0].as_request() == {
        "path": "two.py", "description": "Python: def two() -> int"}
    assert task.verify_timeout == task.hidden_check_timeout == 60.0 and not task.edits_existing
    assert task.describe()["largest_file_lines"] == 1


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace('task_type = "generate"', 'task_type = "poetry"'), "`task_type` must be one of generate"),
    (lambda t: t.replace('verify = "{python} -B -c \'import two\'"\n', ""), "`verify` is missing"),
    (lambda t: t.replace('language = "python"', "language = 3"), "`language` must be the language of the outputs"),
    (lambda t: t.replace('language = "python"', 'language = " "'), "got an empty text"),
    (lambda t: "colour = 'red'\n" + t, "unknown field(s) colour"),
    (lambda t: "id = 'other'\n" + t, "must be the directory's name"),
    (lambda t: "max_attempts = 0\n" + t, "`max_attempts` must be from 1 to 10"),
    (lambda t: "max_attempts = true\n" + t, "`max_attempts` must be an integer"),
    (lambda t: "verify_timeout = -1\n" + t, "`verify_timeout` must be more than 0"),
    (lambda t: "context_files = ['missing.py']\n" + t, "context file(s) missing.py not under files/"),
    (lambda t: "context_files = ['../up.py']\n" + t, "expected a relative path inside the project"),
    (lambda t: t.replace('path = "two.py"', 'path = "/etc/two.py"'), "expected a relative path"),
    (lambda t: t.split("[[outputs]]")[0], "`outputs` must be a non-empty array"),
    (lambda t: t + "\n[[outputs]]\ndescription = 'no path'\n", "each [[outputs]] needs a `path`"),
    (lambda t: t.replace("Write two.py", "{python} -B {check}/check_two.py; write two.py"),
     "the hidden check's text is in what the model sees"),
    (lambda t: t + "\nnot toml at all", "not valid TOML"),
])
def test_a_broken_task_file_is_refused_with_its_file_and_field(
    tmp_path: Path, change: Callable[[str], str], message: str
) -> None:
    root = write_task(tmp_path, toml=change(TASK_TOML))
    with pytest.raises(SuiteError) as caught:
        load_task(root)
    assert str(root / "task.toml") in str(caught.value) and message in str(caught.value)


def test_a_hidden_check_file_that_is_also_a_starting_file_is_refused(tmp_path: Path) -> None:
    root = write_task(tmp_path, files={"check_two.py": "print('visible')\n"})
    with pytest.raises(SuiteError, match="check_two.py is both in check/ and in files/"):
        load_task(root)


def test_a_directory_without_task_toml_is_no_task_and_an_empty_suite_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match="no task.toml"):
        load_task(tmp_path)
    with pytest.raises(SuiteError, match="no task directories"):
        load_suite(tmp_path)
    with pytest.raises(SuiteError, match="no such suite directory"):
        load_suite(tmp_path / "absent")


def test_the_suite_is_every_task_directory_in_id_order_and_only_selects_known_ids(tmp_path: Path) -> None:
    for task_id in ("gen-b", "gen-a", "gen-c"):
        write_task(tmp_path, task_id)
    (tmp_path / "README.md").write_text("not a task")
    suite = load_suite(tmp_path)
    assert [t.id for t in suite] == ["gen-a", "gen-b", "gen-c"]
    assert [t.id for t in select_tasks(suite, ["gen-c", " gen-a"])] == ["gen-a", "gen-c"]
    assert select_tasks(suite, None) == suite
    with pytest.raises(InvalidArgument, match=r"--only: expected task ids of the suite \(gen-a, gen-b, gen-c\)"):
        select_tasks(suite, ["gen-a", "nope"])
    with pytest.raises(InvalidArgument, match="at least one task id"):
        select_tasks(suite, [" "])


def test_commands_get_this_python_and_the_check_directory_shell_quoted() -> None:
    command = "{python} -B {check}/c.py {other}"
    assert expand_command(command, check_dir=Path("/tmp/with space")) == (
        f"{shlex.quote(sys.executable)} -B '/tmp/with space'/c.py {{other}}")
    assert expand_command(command) == f"{shlex.quote(sys.executable)} -B {{check}}/c.py {{other}}"


def test_the_scratch_project_gets_the_starting_files_and_nothing_of_the_check(tmp_path: Path) -> None:
    task = load_task(write_task(tmp_path / "suite", files={"notes.txt": "n\n", "pkg/mod.py": "X = 1\n"}))
    prepare_project(task, tmp_path / "project")
    found = sorted(p.relative_to(tmp_path / "project").as_posix() for p in (tmp_path / "project").rglob("*")
                   if p.is_file())
    assert found == ["notes.txt", "pkg/mod.py"]


def test_the_hidden_lines_are_the_command_and_the_checks_own_lines_not_what_the_model_sees_anyway(
    tmp_path: Path,
) -> None:
    task = load_task(write_task(tmp_path, files={"two_usage.py": "from two import two\n"}))
    assert hidden_lines(task) == ["assert two() == 2, 'two() must return the number two'",
                                  "{python} -B {check}/check_two.py"]
