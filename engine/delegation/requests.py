"""Checking what a caller asks for, before a run exists: every refusal names the field, what was expected and, for a
limit, the limit.

`check_delegate` checks the values (types, text, numbers, sizes) without touching the disk; `check_files` then
resolves the output paths (identity, protected paths) and reads the context files, and is the part a caller on an
event loop runs in a worker thread. Both are linear in the size of the request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.delegation.context_files import MAX_CONTEXT_BYTES, read_text_file
from engine.delegation.paths import Protection, check_output, resolve_inside
from engine.delegation.verify import DEFAULT_TIMEOUT_S
from engine.errors import InvalidArgument
from engine.executor.backends.base import THINK_LEVELS
from engine.executor.forms import check_answer_form
from engine.executor.prompting import OutputSpec
from states import OutputFile

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "MAX_ATTEMPTS_LIMIT",
    "MAX_CONTEXT_BYTES",
    "MAX_CONTEXT_FILES",
    "MAX_DESCRIPTION_BYTES",
    "MAX_OUTPUTS",
    "MAX_TASK_BYTES",
    "MAX_VERIFY_BYTES",
    "MAX_VERIFY_TIMEOUT_S",
    "MAX_WAIT_S",
    "TASK_TYPES",
    "AnalyzeRequest",
    "DelegateRequest",
    "as_run_data",
    "check_analyze",
    "check_delegate",
    "check_files",
    "check_flag",
    "check_number",
    "check_wait",
    "output_specs",
]

TASK_TYPES = ("generate", "test", "docs", "refactor", "translate")
MAX_ATTEMPTS_LIMIT = 10
DEFAULT_MAX_ATTEMPTS = 3
MAX_TASK_BYTES = 64 * 1024
"""The task text (UTF-8): about 16,000 tokens, more than a local model's window leaves for the task."""
MAX_DESCRIPTION_BYTES = 16 * 1024
MAX_OUTPUTS = 32
MAX_CONTEXT_FILES = 128
MAX_VERIFY_BYTES = 64 * 1024
"""The verify command runs as one `sh -c` argument, which Linux caps at 128 KiB (MAX_ARG_STRLEN)."""
MAX_VERIFY_TIMEOUT_S = 24 * 3600.0
MAX_WAIT_S = 24 * 3600.0
MAX_MODEL_BYTES = 256


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
    """As requested by check_delegate; in their canonical spelling once through check_files."""
    verify: str
    verify_timeout: float
    max_attempts: int
    model: str | None
    allow_secrets: bool
    allow_config_writes: bool = False
    think: bool | str = False
    answer_form: str = "auto"

    @property
    def output_files(self) -> list[OutputFile]:
        return [{"path": o.path, "description": o.description} for o in self.outputs]


def _text(value: object, field: str, expected: str, *, limit: int, blank: bool = False) -> str:
    """A string in valid UTF-8, without NUL bytes, of at most `limit` bytes; blank only when `blank`."""
    if not isinstance(value, str) or (not blank and not value.strip()):
        raise InvalidArgument(field, expected, value)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" is valid JSON): no backend can send it
        raise InvalidArgument(field, expected + " in valid UTF-8 (this one holds a lone surrogate)", value) from None
    if "\x00" in value:
        raise InvalidArgument(field, expected + " without NUL bytes", value)
    if size > limit:
        raise InvalidArgument(field, f"{expected} of at most {limit} bytes (UTF-8); this one has {size}")
    return value


def _number(value: object, field: str, *, low: float, high: float, integer: bool = False,
            low_open: bool = False) -> float:
    """A finite int (or float unless `integer`), never a bool, within [low, high] ((low, high] when `low_open`)."""
    bounds = f"{'more than' if low_open else 'at least'} {low:g} and at most {high:g}"
    expected = f"{'an integer' if integer else 'a number'} {bounds}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and isinstance(value, float)):
        raise InvalidArgument(field, expected, value)
    if isinstance(value, float) and not math.isfinite(value):  # nan passes every comparison below
        raise InvalidArgument(field, expected, value)
    if value > high or value < low or (low_open and value == low):
        raise InvalidArgument(field, expected, value)
    return value


def _task(task: object) -> str:
    return _text(task, "task", "a non-empty description of the task", limit=MAX_TASK_BYTES)


def _strings(value: object, field_name: str, *, limit: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgument(field_name, "a list of relative file paths", value)
    if len(value) > limit:
        raise InvalidArgument(field_name, f"a list of at most {limit} paths; this one has {len(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise InvalidArgument(f"{field_name}[{i}]", "a relative file path (a non-empty string)", item)
    return list(value)


def output_specs(value: object) -> list[OutputSpec]:
    if not value or isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgument("output_files", "a non-empty list of {path, description}", value)
    if len(value) > MAX_OUTPUTS:
        raise InvalidArgument("output_files", f"at most {MAX_OUTPUTS} files; this list has {len(value)}")
    specs: list[OutputSpec] = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            specs.append(OutputSpec(item))
        elif isinstance(item, Mapping) and isinstance(item.get("path"), str):
            description = item.get("description") or ""
            _text(description, f"output_files[{i}].description", "a string", limit=MAX_DESCRIPTION_BYTES, blank=True)
            specs.append(OutputSpec(item["path"], description))
        else:
            raise InvalidArgument(f"output_files[{i}]", "an object {path, description} or a path string", item)
    return specs


def check_wait(wait: object) -> float | None:
    if wait is None:
        return None
    try:
        return float(_number(wait, "wait", low=0, high=MAX_WAIT_S))
    except InvalidArgument as exc:
        raise InvalidArgument("wait", exc.expected + " seconds, or nothing to wait for the end", wait) from None


def _flag(value: object, field: str) -> bool:
    # bool("no") is True: a flag that opens a door takes a real boolean only.
    if not isinstance(value, bool):
        raise InvalidArgument(field, "true or false", value)
    return value


def check_analyze(
    root: Path, *, task: object, files: object, output_files: object, task_type: object
) -> AnalyzeRequest:
    task = _task(task)
    if task_type is not None and task_type not in TASK_TYPES:
        raise InvalidArgument("task_type", f"one of {', '.join(TASK_TYPES)}", task_type)
    file_list = _strings(files, "files", limit=MAX_CONTEXT_FILES)
    outputs = [o.path for o in output_specs(output_files)] if output_files else []
    for i, path in enumerate(file_list):
        resolve_inside(root, path, field=f"files[{i}]")
    for i, path in enumerate(outputs):
        resolve_inside(root, path, field=f"output_files[{i}]")
    return AnalyzeRequest(task, file_list, outputs, task_type if isinstance(task_type, str) else None)


def check_delegate(
    *, task: object, task_type: object, context_files: object, output_files: object, verify: object,
    max_attempts: object, model: object, allow_secrets: object, verify_timeout: object,
    allow_config_writes: object = False, think: object = False, answer_form: object = None,
) -> DelegateRequest:
    """The request's values, checked without touching the disk (see check_files). None for task_type,
    max_attempts or verify_timeout means the default (callers pass omitted fields as None)."""
    task = _task(task)
    task_type = "generate" if task_type is None else task_type
    if task_type not in TASK_TYPES:
        raise InvalidArgument("task_type", f"one of {', '.join(TASK_TYPES)}", task_type)
    max_attempts = DEFAULT_MAX_ATTEMPTS if max_attempts is None else max_attempts
    attempts = int(_number(max_attempts, "max_attempts", low=1, high=MAX_ATTEMPTS_LIMIT, integer=True))
    if verify is not None:
        _text(verify, "verify", "a shell command (run with sh -c in the project root) or nothing",
              limit=MAX_VERIFY_BYTES)
    verify_timeout = DEFAULT_TIMEOUT_S if verify_timeout is None else verify_timeout
    timeout = float(_number(verify_timeout, "verify_timeout", low=0, high=MAX_VERIFY_TIMEOUT_S, low_open=True))
    if model is not None:
        _text(model, "model", "a model name, or nothing for the session's", limit=MAX_MODEL_BYTES, blank=True)
    return DelegateRequest(
        task=task, task_type=str(task_type), outputs=output_specs(output_files), verify=str(verify or ""),
        context_files=_strings(context_files, "context_files", limit=MAX_CONTEXT_FILES), verify_timeout=timeout,
        max_attempts=attempts, model=model.strip() or None if isinstance(model, str) else None,
        allow_secrets=_flag(allow_secrets, "allow_secrets"),
        allow_config_writes=_flag(allow_config_writes, "allow_config_writes"), think=check_think(think),
        answer_form=check_answer_form(answer_form) or "auto",
    )


def check_think(value: object) -> bool | str:
    """false (mechanical work: the default), true, or a level; None means the default."""
    if value is None:
        return False
    if isinstance(value, bool) or value in THINK_LEVELS:
        return value
    raise InvalidArgument("think", f"true, false or one of {', '.join(THINK_LEVELS)}", value)


def check_files(root: Path, request: DelegateRequest) -> DelegateRequest:
    """The file-system half: every output resolved to its identity and checked (inside the project, not protected,
    not a directory, two outputs never the same file nor one inside the other), every context file read within the
    shared context limit. Returns the request with its outputs in their canonical spelling."""
    protection = Protection.of(root)
    outputs = [check_output(root, spec.path, field=f"output_files[{i}].path",
                            allow_config_writes=request.allow_config_writes, protection=protection)
               for i, spec in enumerate(request.outputs)]
    first: dict[str, int] = {}
    for i, output in enumerate(outputs):
        if (j := first.setdefault(output.key, i)) != i:
            raise InvalidArgument(f"output_files[{i}].path", f"a file not named already (output_files[{j}].path, "
                                  f"{request.outputs[j].path!r}, is the same file)", request.outputs[i].path)
    # A set of every output's directories keeps this linear: `a` and `a/b` cannot both be files.
    directories = {key for output in outputs for key in output.parent_keys}
    for i, output in enumerate(outputs):
        if output.key in directories:
            raise InvalidArgument(f"output_files[{i}].path", "a file, not a directory of another output",
                                  request.outputs[i].path)
    left = MAX_CONTEXT_BYTES
    for i, path in enumerate(request.context_files):
        text = read_text_file(root, path, field=f"context_files[{i}]", allow_secrets=request.allow_secrets,
                              limit=left)
        left -= len(text.encode("utf-8"))
    canonical = [OutputSpec(output.relative, spec.description)
                 for output, spec in zip(outputs, request.outputs, strict=True)]
    return replace(request, outputs=canonical)


check_flag = _flag
"""A real boolean (never "no" or 1), named after its field."""
check_number = _number
"""A finite number (never a bool) within bounds, named after its field."""


def as_run_data(request: DelegateRequest, *, score: float) -> dict[str, Any]:
    """The new run's data (states.RunData's fields)."""
    return {
        "task": request.task, "task_type": request.task_type, "context_files": request.context_files,
        "output_files": request.output_files, "verify": request.verify, "verify_timeout": request.verify_timeout,
        "max_attempts": request.max_attempts, "attempt": 0, "model": request.model,
        "allow_secrets": request.allow_secrets, "allow_config_writes": request.allow_config_writes, "score": score,
        "think": request.think, "answer_form": request.answer_form,
    }
