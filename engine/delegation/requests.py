"""Checking what a caller asks for, before a run exists: every refusal names the field and what was expected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.delegation.context_files import read_text_file
from engine.delegation.paths import resolve_inside, writable_target
from engine.delegation.verify import DEFAULT_TIMEOUT_S
from engine.errors import InvalidArgument
from engine.executor.prompting import OutputSpec
from states import OutputFile

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_ATTEMPTS_LIMIT",
    "TASK_TYPES",
    "AnalyzeRequest",
    "DelegateRequest",
    "check_analyze",
    "check_delegate",
    "check_wait",
    "as_run_data",
    "output_specs",
]

TASK_TYPES = ("generate", "test", "docs", "refactor", "translate")
MAX_ATTEMPTS_LIMIT = 10
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class AnalyzeRequest:
    task: str
    files: list[str]
    output_files: list[str]
    task_type: str | None


@dataclass(frozen=True)
class DelegateRequest:
    task: str
    task_type: str
    context_files: list[str]
    outputs: list[OutputSpec]
    verify: str
    verify_timeout: float
    max_attempts: int
    model: str | None
    allow_secrets: bool

    @property
    def output_files(self) -> list[OutputFile]:
        return [{"path": o.path, "description": o.description} for o in self.outputs]


def _task(task: object) -> str:
    if not isinstance(task, str) or not task.strip():
        raise InvalidArgument("task", "a non-empty description of the task", task)
    return task


def _strings(value: object, field_name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgument(field_name, "a list of relative file paths", value)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise InvalidArgument(f"{field_name}[{i}]", "a relative file path (a non-empty string)", item)
    return list(value)


def output_specs(value: object) -> list[OutputSpec]:
    if not value or isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgument("output_files", "a non-empty list of {path, description}", value)
    specs: list[OutputSpec] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            specs.append(OutputSpec(item))
        elif isinstance(item, Mapping) and isinstance(item.get("path"), str):
            description = item.get("description") or ""
            if not isinstance(description, str):
                raise InvalidArgument(f"output_files[{i}].description", "a string", description)
            specs.append(OutputSpec(item["path"], description))
        else:
            raise InvalidArgument(f"output_files[{i}]", "an object {path, description} or a path string", item)
    return specs


def check_wait(wait: object) -> float | None:
    if wait is not None and (isinstance(wait, bool) or not isinstance(wait, (int, float)) or wait < 0):
        raise InvalidArgument("wait", "seconds to wait (>= 0), or nothing to wait for the end", wait)
    return None if wait is None else float(wait)


def check_analyze(
    root: Path, *, task: object, files: object, output_files: object, task_type: object
) -> AnalyzeRequest:
    task = _task(task)
    if task_type is not None and task_type not in TASK_TYPES:
        raise InvalidArgument("task_type", f"one of {', '.join(TASK_TYPES)}", task_type)
    file_list = _strings(files, "files")
    outputs = [o.path for o in output_specs(output_files)] if output_files else []
    for i, path in enumerate(file_list):
        resolve_inside(root, path, field=f"files[{i}]")
    for i, path in enumerate(outputs):
        resolve_inside(root, path, field=f"output_files[{i}]")
    return AnalyzeRequest(task, file_list, outputs, task_type if isinstance(task_type, str) else None)


def check_delegate(
    root: Path, *, task: object, task_type: object, context_files: object, output_files: object, verify: object,
    max_attempts: object, model: object, allow_secrets: object, verify_timeout: object,
) -> DelegateRequest:
    """None for task_type, max_attempts or verify_timeout means the default (callers pass omitted fields as None)."""
    task = _task(task)
    task_type = "generate" if task_type is None else task_type
    if task_type not in TASK_TYPES:
        raise InvalidArgument("task_type", f"one of {', '.join(TASK_TYPES)}", task_type)
    max_attempts = DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or not (
        1 <= max_attempts <= MAX_ATTEMPTS_LIMIT
    ):
        raise InvalidArgument("max_attempts", f"an integer from 1 to {MAX_ATTEMPTS_LIMIT}", max_attempts)
    if verify is not None and (not isinstance(verify, str) or not verify.strip()):
        raise InvalidArgument("verify", "a shell command (run with sh -c in the project root) or nothing", verify)
    verify_timeout = DEFAULT_TIMEOUT_S if verify_timeout is None else verify_timeout
    if isinstance(verify_timeout, bool) or not isinstance(verify_timeout, (int, float)) or verify_timeout <= 0:
        raise InvalidArgument("verify_timeout", "a positive number of seconds", verify_timeout)
    if model is not None and not isinstance(model, str):
        raise InvalidArgument("model", "a model name, or nothing for the session's", model)
    outputs = output_specs(output_files)
    targets = [writable_target(root, o.path, field=f"output_files[{i}].path") for i, o in enumerate(outputs)]
    if len(set(targets)) != len(outputs):
        raise InvalidArgument("output_files", "distinct paths", [o.path for o in outputs])
    for i, target in enumerate(targets):
        if any(target in other.parents for other in targets):
            # `a` and `a/b` cannot both be files: the second write would fail half-way through the run.
            raise InvalidArgument(f"output_files[{i}].path", "a file, not a directory of another output",
                                  outputs[i].path)
    contexts = _strings(context_files, "context_files")
    for i, path in enumerate(contexts):
        read_text_file(root, path, field=f"context_files[{i}]", allow_secrets=bool(allow_secrets))
    return DelegateRequest(
        task=task, task_type=str(task_type), context_files=contexts, outputs=outputs, verify=verify or "",
        verify_timeout=float(verify_timeout), max_attempts=max_attempts, model=model.strip() or None if model else None,
        allow_secrets=bool(allow_secrets),
    )


def as_run_data(request: DelegateRequest, *, score: float) -> dict[str, Any]:
    """The new run's data (states.RunData's fields)."""
    return {
        "task": request.task, "task_type": request.task_type, "context_files": request.context_files,
        "output_files": request.output_files, "verify": request.verify, "verify_timeout": request.verify_timeout,
        "max_attempts": request.max_attempts, "attempt": 0, "model": request.model,
        "allow_secrets": request.allow_secrets, "score": score,
    }
