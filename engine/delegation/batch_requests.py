"""Checking a batch before it exists: the list of delegate requests (or an object with `runs` and options, or a
template expanded over a glob), each child checked as `delegate` checks a request, and two children that would write
one file refused up front. Every refusal names the field (`runs[3].output_files[0].path`, `template.output`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.delegation.paths import output_identity
from engine.delegation.requests import (
    DelegateRequest,
    check_delegate,
    check_files,
    check_flag,
    check_number,
)
from engine.delegation.templates import fill, project_glob, shell_placeholder_problems
from engine.errors import InvalidArgument

__all__ = ["MAX_CHILDREN", "BatchRequest", "check_batch", "check_batch_files", "expand_template"]

MAX_CHILDREN = 500
RUN_FIELDS = frozenset({
    "task", "task_type", "context_files", "output_files", "verify", "max_attempts", "model", "allow_secrets",
    "allow_config_writes", "verify_timeout", "think", "answer_form",
})
OPTIONS = frozenset({"runs", "template", "glob", "max_parallel", "max_failures", "max_attempts", "parallel_verify"})
TEMPLATE_FIELDS = RUN_FIELDS - {"output_files"} | {"output", "description"}


@dataclass(frozen=True)
class BatchRequest:
    children: list[DelegateRequest]
    max_parallel: int | None = None
    max_failures: int | None = None
    parallel_verify: bool = False
    template: str | None = None
    """The glob a template was expanded over."""


def expand_template(root: Path, template: object, pattern: object) -> list[dict[str, Any]]:
    """One delegate request per file the glob matches (sorted; engine.delegation.templates.project_glob: inside the
    project only), placeholders {path} {name} {stem} {dir} filled in every text field, and in `verify` quoted as one
    shell word each. Refused: a glob that matches nothing, a template whose output is not told apart per file (an
    ambiguous expansion: two files would write one output), a `verify` that puts a placeholder inside quotes of its
    own (the value would be unquoted again), a field the template does not know. Lists directories: callers on an
    event loop run it in a worker thread."""
    if not isinstance(template, Mapping):
        raise InvalidArgument("template", "an object {task, output, ...} whose text may hold {path}, {stem}, ...",
                              template)
    if unknown := sorted(set(template) - TEMPLATE_FIELDS):
        raise InvalidArgument("template", f"only the fields {', '.join(sorted(TEMPLATE_FIELDS))}; unknown: "
                              f"{', '.join(unknown)}")
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidArgument("glob", "a glob of files relative to the project root (e.g. src/**/*.py)", pattern)
    output = template.get("output")
    if not isinstance(output, str) or not output.strip():
        raise InvalidArgument("template.output", "the output path, with a placeholder such as tests/test_{stem}.py",
                              output)
    verify = template.get("verify")
    if isinstance(verify, str) and (problems := shell_placeholder_problems(verify)):
        raise InvalidArgument("template.verify", f"placeholders outside quotes of the template's own: the engine "
                              f"quotes each value as one shell word itself (write pytest tests/test_{{stem}}.py, not "
                              f"pytest \"tests/test_{{stem}}.py\"); this one has {', '.join(problems)}", verify)
    matches = project_glob(root, pattern)
    if not matches:
        raise InvalidArgument("glob", "a glob that matches at least one file", pattern)
    if len(matches) > MAX_CHILDREN:
        raise InvalidArgument("glob", f"a glob that matches at most {MAX_CHILDREN} files; {len(matches)} match")
    outputs: dict[str, str] = {}
    for path in matches:
        target = fill(output, path)
        if target in outputs:
            raise InvalidArgument("template.output", f"one output per file; {outputs[target]!r} and {path!r} both "
                                  f"expand to {target!r} (the glob matched {len(matches)} files: "
                                  f"{', '.join(matches[:8])}{', ...' if len(matches) > 8 else ''})")
        outputs[target] = path
    runs = []
    for target, path in outputs.items():
        run: dict[str, Any] = {k: fill(v, path, shell=k == "verify") if isinstance(v, str) else v
                               for k, v in template.items() if k not in ("output", "description")}
        if isinstance(run.get("context_files"), list):
            run["context_files"] = [fill(c, path) if isinstance(c, str) else c for c in run["context_files"]]
        else:
            run.setdefault("context_files", [path])
        description = template.get("description")
        run["output_files"] = [{"path": target,
                                "description": fill(description, path) if isinstance(description, str) else ""}]
        runs.append(run)
    return runs


def check_batch(root: Path, spec: object) -> BatchRequest:
    """The batch's values, checked without reading the context files (check_batch_files does). A template's glob
    lists directories: callers on an event loop run this in a worker thread."""
    options: Mapping[str, Any] = {}
    if isinstance(spec, Mapping):
        options = spec
        if unknown := sorted(set(spec) - OPTIONS):
            raise InvalidArgument("batch", f"an object with the fields {', '.join(sorted(OPTIONS))}; unknown: "
                                  f"{', '.join(unknown)}")
        if (spec.get("runs") is None) == (spec.get("template") is None):
            raise InvalidArgument("batch", "either runs (a list of delegate requests) or template with glob")
        runs = spec.get("runs")
        if runs is None:
            runs = expand_template(root, spec.get("template"), spec.get("glob"))
    else:
        runs = spec
    if isinstance(runs, (str, bytes)) or not isinstance(runs, Sequence) or not runs:
        raise InvalidArgument("runs", "a non-empty list of delegate requests", runs)
    if len(runs) > MAX_CHILDREN:
        raise InvalidArgument("runs", f"at most {MAX_CHILDREN} requests; this list has {len(runs)}")
    attempts = options.get("max_attempts")
    children = []
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping):
            raise InvalidArgument(f"runs[{i}]", "a delegate request {task, output_files, ...}", run)
        if unknown := sorted(set(run) - RUN_FIELDS):
            raise InvalidArgument(f"runs[{i}]", f"the fields of delegate; unknown: {', '.join(unknown)}")
        fields = {k: run.get(k) for k in RUN_FIELDS}
        fields["max_attempts"] = attempts if attempts is not None else fields["max_attempts"]
        for flag in ("allow_secrets", "allow_config_writes"):
            fields[flag] = False if fields[flag] is None else fields[flag]
        try:
            children.append(check_delegate(**fields))
        except InvalidArgument as exc:
            raise InvalidArgument(f"runs[{i}].{exc.field}", exc.expected) from None

    def optional_int(name: str, low: int) -> int | None:
        value = options.get(name)
        return None if value is None else int(check_number(value, name, low=low, high=10_000, integer=True))

    return BatchRequest(
        children=children, max_parallel=optional_int("max_parallel", 1), max_failures=optional_int("max_failures", 1),
        parallel_verify=check_flag(options.get("parallel_verify", False), "parallel_verify"),
        template=options.get("glob") if options.get("runs") is None and options.get("template") is not None else None,
    )


def check_batch_files(root: Path, request: BatchRequest) -> BatchRequest:
    """Each child as `delegate` checks its files; then no two children may write one file (its identity: the
    resolved real path, case-folded where the file system ignores case)."""
    children: list[DelegateRequest] = []
    owners: dict[str, int] = {}
    for i, child in enumerate(request.children):
        try:
            child = check_files(root, child)
        except InvalidArgument as exc:
            raise InvalidArgument(f"runs[{i}].{exc.field}", exc.expected) from None
        for j, output in enumerate(child.outputs):
            key = output_identity(root, output.path, field=f"runs[{i}].output_files[{j}].path").key
            if (other := owners.setdefault(key, i)) != i:
                raise InvalidArgument(f"runs[{i}].output_files[{j}].path", f"a file no other child of the batch "
                                      f"writes; runs[{other}] writes {output.path!r} too", output.path)
        children.append(child)
    return BatchRequest(children=children, max_parallel=request.max_parallel, max_failures=request.max_failures,
                        parallel_verify=request.parallel_verify, template=request.template)
