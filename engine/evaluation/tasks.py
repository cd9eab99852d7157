"""The eval suite as data: one directory per task, read and checked here (no IO beyond reading the suite).

```
<suite>/<task id>/
  task.toml      what the run gets (task, task_type, context_files, [[outputs]], verify) and how it is judged
                 (hidden_check), plus language, summary, max_attempts, verify_timeout, hidden_check_timeout
  files/         the scratch project's starting files: context, files to change, the verify command's scripts
  check/         the hidden check's files: copied outside the scratch project after the run, never in a prompt
  solution/      reference outputs, laid over files/ by the suite's tests only: the hidden check must pass on them
                 and fail on files/ unchanged
```

Commands (`verify`, `hidden_check`) run with `sh -c` in the scratch project; `{python}` stands for this Python and
`{check}` for the directory that holds the copy of `check/`.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from engine.delegation.requests import TASK_TYPES
from engine.errors import InvalidArgument, UserError
from states import OutputFile

__all__ = [
    "DISTINCT_LINE_CHARS",
    "EvalTask",
    "OutputSpec",
    "SuiteError",
    "expand_command",
    "hidden_lines",
    "load_suite",
    "load_task",
    "prepare_project",
    "select_tasks",
    "visible_text",
]

TASK_FILE = "task.toml"
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
DEFAULT_TIMEOUT_S = 60.0
DISTINCT_LINE_CHARS = 16
"""A line of the hidden check at least this long (stripped) that is not in the visible material is the check's own
text: it must never reach the model."""
_KNOWN = {"id", "task_type", "language", "summary", "task", "context_files", "outputs", "verify", "verify_timeout",
          "hidden_check", "hidden_check_timeout", "max_attempts"}


class SuiteError(UserError):
    """A task directory that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class OutputSpec:
    path: str
    description: str = ""

    def as_request(self) -> OutputFile:
        return {"path": self.path, "description": self.description}


@dataclass(frozen=True)
class EvalTask:
    id: str
    root: Path
    task_type: str
    language: str
    summary: str
    task: str
    context_files: tuple[str, ...]
    outputs: tuple[OutputSpec, ...]
    verify: str
    hidden_check: str
    verify_timeout: float = DEFAULT_TIMEOUT_S
    hidden_check_timeout: float = DEFAULT_TIMEOUT_S
    max_attempts: int | None = None

    @property
    def files_dir(self) -> Path:
        return self.root / "files"

    @property
    def check_dir(self) -> Path:
        return self.root / "check"

    @property
    def solution_dir(self) -> Path:
        return self.root / "solution"

    @property
    def edits_existing(self) -> bool:
        """Whether an output is a file the project starts with (an edit), not a new one."""
        return any((self.files_dir / o.path).is_file() for o in self.outputs)

    def starting_files(self) -> dict[str, Path]:
        return _tree(self.files_dir)

    def check_files(self) -> dict[str, Path]:
        return _tree(self.check_dir)

    def describe(self) -> dict[str, Any]:
        """The task for `--list` and for the report (no hidden check in it)."""
        lines = max((len(p.read_bytes().splitlines()) for p in self.starting_files().values()), default=0)
        return {"id": self.id, "task_type": self.task_type, "language": self.language, "summary": self.summary,
                "outputs": [o.path for o in self.outputs], "edits_existing": self.edits_existing,
                "largest_file_lines": lines}


def _tree(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    return {p.relative_to(directory).as_posix(): p for p in sorted(directory.rglob("*")) if p.is_file()}


def _field(where: Path, data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *,
           default: Any = ..., expected: str) -> Any:
    if name not in data:
        if default is ...:
            raise SuiteError(f"{where}: `{name}` is missing ({expected})")
        return default
    value = data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise SuiteError(f"{where}: `{name}` must be {expected}, got {value!r}"[:300])
    if isinstance(value, str) and not value.strip():
        raise SuiteError(f"{where}: `{name}` must be {expected}, got an empty text")
    return value


def _relative(where: Path, field: str, path: str) -> str:
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path:
        raise SuiteError(f"{where}: `{field}` holds {path!r}: expected a relative path inside the project")
    return pure.as_posix()


def _outputs(where: Path, raw: Any) -> tuple[OutputSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise SuiteError(f"{where}: `outputs` must be a non-empty array of tables [[outputs]] with `path`")
    specs = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise SuiteError(f"{where}: each [[outputs]] needs a `path` (text), got {item!r}"[:300])
        description = item.get("description", "")
        if not isinstance(description, str):
            raise SuiteError(f"{where}: the description of output {item['path']!r} must be text")
        specs.append(OutputSpec(_relative(where, "outputs.path", item["path"]), description))
    return tuple(specs)


def _timeout(where: Path, data: Mapping[str, Any], name: str) -> float:
    value = float(_field(where, data, name, (int, float), default=DEFAULT_TIMEOUT_S, expected="seconds > 0"))
    if not 0 < value <= 3600:
        raise SuiteError(f"{where}: `{name}` must be more than 0 and at most 3600 seconds, got {value:g}")
    return value


def load_task(directory: Path) -> EvalTask:
    """One task from its directory; SuiteError names the file and the field when something is wrong."""
    where = directory / TASK_FILE
    try:
        spec = tomllib.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"{directory}: no {TASK_FILE} (every task directory has one)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{where}: not valid TOML: {exc}") from None
    if unknown := sorted(set(spec) - _KNOWN):
        raise SuiteError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(_KNOWN))}")
    task_id = _field(where, spec, "id", str, default=directory.name, expected="the directory's name")
    if task_id != directory.name or not ID_PATTERN.fullmatch(task_id):
        raise SuiteError(f"{where}: `id` {task_id!r} must be the directory's name, in lower case letters, digits "
                         "and dashes")
    task_type = _field(where, spec, "task_type", str, expected=f"one of {', '.join(TASK_TYPES)}")
    if task_type not in TASK_TYPES:
        raise SuiteError(f"{where}: `task_type` must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
    text = _field(where, spec, "task", str, expected="the task's text")
    context = _field(where, spec, "context_files", list, default=[], expected="an array of paths")
    attempts = _field(where, spec, "max_attempts", int, default=None, expected="an integer from 1 to 10")
    if attempts is not None and not 1 <= attempts <= 10:
        raise SuiteError(f"{where}: `max_attempts` must be from 1 to 10, got {attempts}")
    task = EvalTask(
        id=task_id, root=directory, task_type=task_type,
        language=_field(where, spec, "language", str, expected="the language of the outputs"),
        summary=_field(where, spec, "summary", str, default=text.strip().splitlines()[0][:100], expected="text"),
        task=text.strip(), context_files=tuple(_relative(where, "context_files", str(c)) for c in context),
        outputs=_outputs(where, spec.get("outputs")),
        verify=_field(where, spec, "verify", str, expected="the verify command shown to the model"),
        hidden_check=_field(where, spec, "hidden_check", str, expected="the command that decides pass or fail"),
        verify_timeout=_timeout(where, spec, "verify_timeout"),
        hidden_check_timeout=_timeout(where, spec, "hidden_check_timeout"), max_attempts=attempts,
    )
    _check_layout(where, task)
    return task


def _check_layout(where: Path, task: EvalTask) -> None:
    starting = task.starting_files()
    if missing := [c for c in task.context_files if c not in starting]:
        raise SuiteError(f"{where}: context file(s) {', '.join(missing)} not under files/")
    if both := sorted(set(task.check_files()) & set(starting)):
        raise SuiteError(f"{where}: {', '.join(both)} is both in check/ and in files/: the hidden check's files "
                         "must not be in the scratch project")
    if leaked := [line for line in hidden_lines(task) if line in visible_text(task)]:
        raise SuiteError(f"{where}: the hidden check's text is in what the model sees: {leaked[0]!r}")


def load_suite(directory: Path) -> list[EvalTask]:
    """Every task under `directory` (each sub-directory with a task.toml), sorted by id."""
    if not directory.is_dir():
        raise SuiteError(f"{directory}: no such suite directory")
    tasks = [load_task(d) for d in sorted(directory.iterdir()) if d.is_dir() and (d / TASK_FILE).is_file()]
    if not tasks:
        raise SuiteError(f"{directory}: no task directories (each with a {TASK_FILE})")
    return tasks


def select_tasks(tasks: Sequence[EvalTask], only: Iterable[str] | None) -> list[EvalTask]:
    """The tasks named in `only` (in the suite's order), or all of them; an unknown id is an InvalidArgument."""
    if only is None:
        return list(tasks)
    wanted = [i.strip() for i in only if i.strip()]
    known = {t.id for t in tasks}
    if unknown := [i for i in wanted if i not in known]:
        raise InvalidArgument("--only", f"task ids of the suite ({', '.join(sorted(known))})", ",".join(unknown))
    if not wanted:
        raise InvalidArgument("--only", "at least one task id", "")
    return [t for t in tasks if t.id in wanted]


def expand_command(command: str, *, check_dir: Path | None = None, python: str = sys.executable) -> str:
    """`{python}` and `{check}` replaced by shell-quoted paths; nothing else in the command is touched."""
    expanded = command.replace("{python}", shlex.quote(python))
    if check_dir is not None:
        expanded = expanded.replace("{check}", shlex.quote(str(check_dir)))
    return expanded


def prepare_project(task: EvalTask, project: Path) -> None:
    """The scratch project: a copy of the task's starting files (nothing of check/ or solution/)."""
    project.mkdir(parents=True, exist_ok=True)
    for relative, source in task.starting_files().items():
        target = project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def visible_text(task: EvalTask) -> str:
    """Everything of the task that the model may see: the task, the outputs, the verify command, the files."""
    parts = [task.task, task.verify, *(f"{o.path} {o.description}" for o in task.outputs)]
    parts += [p.read_text(encoding="utf-8", errors="replace") for p in task.starting_files().values()]
    return "\n".join(parts)


def hidden_lines(task: EvalTask) -> list[str]:
    """The hidden check's own lines (its command, and its files' lines of DISTINCT_LINE_CHARS or more), minus the
    lines that are in the visible material as well: text that must never be in a request to the model."""
    lines = [task.hidden_check.strip()]
    for path in task.check_files().values():
        lines += [s for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                  if len(s := line.strip()) >= DISTINCT_LINE_CHARS]
    visible = visible_text(task)
    return sorted({line for line in lines if line not in visible or line == task.hidden_check.strip()})
