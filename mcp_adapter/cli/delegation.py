"""CLI commands of the delegation pipeline: analyze, delegate, batch, stats (demo is in demo.py)."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from engine import ANSWER_FORMS, TASK_TYPES, THINK_LEVELS, Engine, InvalidArgument, OutputFile
from mcp_adapter.cli.common import JsonOption, ProjectOption, VerboseOption, execute
from mcp_adapter.cli.output import Result, progress_bar

__all__ = ["TaskType", "batch_text", "register", "result_text"]

TaskType = Literal[TASK_TYPES]  # type: ignore[valid-type]  # the engine's tuple is the one list of choices
AnswerForm = Literal[ANSWER_FORMS]  # type: ignore[valid-type]
ThinkChoice = Literal[("off", "on", *THINK_LEVELS)]  # type: ignore[valid-type]


def _analysis_text(a: dict[str, Any]) -> str:
    lines = [f"{a['recommendation']} (score {a['score']:.2f}, threshold {a['threshold']}, base {a['base']})"]
    lines += [f"  {r['weight']:+.2f}  {r['signal']}: {r['detail']}" for r in a["reasons"]]
    return "\n".join(lines)


def result_text(r: dict[str, Any]) -> str:
    """A delegation's result for people: files, verification, tokens, and the error of a run that did not finish."""
    lines = [f"run {r['run_id']}: {r['state']} after {r['attempts']} attempt(s)"]
    for f in r.get("files", []):
        change = f", +{f['added']} -{f['removed']}" if "added" in f else ""
        where = f" in {', '.join(f['changed'])}" if f.get("changed") else ""
        lines.append(f"  {f['status']:<12} {f['path']} ({f['bytes']} bytes{change}){where}")
    for s in r.get("files_skipped", []):
        lines.append(f"  skipped      {s['path']}: {s['reason']}")
    for c in r.get("conflicts", []):
        kept = f"; the run's version: {c['kept_at']}" if c.get("kept_at") else ""
        lines.append(f"  conflict     {c['path']}: {c['found']} by someone else while {c['during']}, left alone{kept}")
    v = r.get("verification") or {}
    if v.get("passed") is not None:
        lines.append(f"verify: {'passed' if v['passed'] else 'failed'}")
        if v.get("output_tail") and not v["passed"]:
            lines += ["  " + line for line in v["output_tail"].rstrip().splitlines()[-20:]]
    thinking = f" ({r['thinking_tokens']} thinking)" if r.get("thinking_tokens") else ""
    lines.append(
        f"tokens: {r.get('tokens_generated', 0)} generated{thinking}, {r.get('prompt_tokens', 0)} prompt; "
        f"time: {r.get('time_seconds') or 0:.1f} s; model: {r.get('model') or '-'}"
    )
    if r.get("error") and r["state"] != "done":
        lines.append(f"error: {r['error'].splitlines()[0]}")
    return "\n".join(lines)


def batch_text(b: dict[str, Any]) -> str:
    """A batch for people: counts, then one line per child (child n is run <batch id>.<n>)."""
    counts = ", ".join(f"{n} {state}" for state, n in b["counts"].items()) or "nothing yet"
    lines = [f"batch {b['batch_id']}: {b['state']}, {b['total']} children ({counts})"]
    if b.get("paused"):
        lines.append(f"paused: {b['paused']}")
    if b.get("stop_reason"):
        lines.append(f"stopped: {b['stop_reason']}")
    for n, line in enumerate(b.get("children") or b.get("running") or [], 1):
        lines.append(f"  {n:>3}  {line}" if "children" in b else f"  running  {line}")
    lines.append(f"tokens: {b['tokens_generated']} generated; time: {b['time_seconds']:.1f} s")
    return "\n".join(lines)


def _read_batch(file: str) -> object:
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
        return json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgument("FILE", "a JSON list of delegate requests, or an object with runs or template + glob "
                              f"({exc})") from None


async def _batch(engine: Engine, *, file: str, max_parallel: int | None, max_failures: int | None,
                 max_attempts: int | None, parallel_verify: bool) -> Result:
    spec = _read_batch(file)
    options = {k: v for k, v in (("max_parallel", max_parallel), ("max_failures", max_failures),
                                 ("max_attempts", max_attempts)) if v is not None}
    if parallel_verify:
        options["parallel_verify"] = True
    if options:
        spec = {**spec, **options} if isinstance(spec, dict) else {"runs": spec, **options}
    with progress_bar() as progress:
        result = await engine.batch(spec, progress=progress)
    done = result["counts"].get("done", 0) == result["total"]
    return Result(result, batch_text, exit_code=0 if done else 1)


def _stats_text(s: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.0%}"

    lines = [
        f"analyzed: {s['analyzed']} (recommended delegate: {pct(s['delegation_rate'])})",
        f"delegated: {s['delegated']} (done {s['done']}, failed {s['failed']}, cancelled {s['cancelled']})",
        f"conflicts with other writers: {s.get('conflicts', 0)} in {s.get('runs_with_conflicts', 0)} run(s)",
        (f"verification pass rate: {pct(s['verification_pass_rate'])}; "
         f"first attempt: {pct(s['first_attempt_pass_rate'])}"),
        (f"tokens generated: {s['tokens_generated']} ({s.get('thinking_tokens', 0)} thinking); "
         f"time: {s['time_seconds']:.1f} s"),
        f"prompts too long for the context: {s.get('runs_prompt_too_long', 0)}",
        f"orchestrator tokens saved (estimate): {s['orchestrator_tokens_saved_estimate']}",
    ]
    for title, key in (("by task type", "by_task_type"), ("by model", "by_model")):
        for name, g in s[key].items():
            lines.append(f"  {title} {name}: {g['runs']} runs, {g['done']} done, "
                         f"pass {pct(g['verification_pass_rate'])}")
    if (b := s.get("batches")) and b["count"]:
        lines.append(f"batches: {b['count']} ({b['child_runs']} child runs, {b['child_runs_done']} done)")
    if s["corrupt_lines"]:
        lines.append(f"skipped {s['corrupt_lines']} corrupt log line(s)")
    return "\n".join(lines)


def _output_spec(text: str) -> OutputFile:
    path, _, description = text.partition("=")
    if not path:
        raise InvalidArgument("--output", "PATH or PATH=DESCRIPTION", text)
    return {"path": path, "description": description}


async def _analyze(
    engine: Engine, *, task: str, files: list[str], output_files: list[str], task_type: str | None
) -> Result:
    result = engine.analyze(task=task, files=files, output_files=output_files, task_type=task_type)
    return Result(result, _analysis_text)


async def _delegate(
    engine: Engine, *, task: str, task_type: str, context: list[str], output: list[str], verify: str | None,
    max_attempts: int, verify_timeout: float, model: str | None, allow_secrets: bool, allow_config_writes: bool,
    think: str, answer_form: str | None,
) -> Result:
    # Parsed inside the handler so that a bad --output is a UserError (exit 2, message on stderr) like the engine's.
    output_files = [_output_spec(o) for o in output]
    with progress_bar() as progress:
        result = await engine.delegate(
            task=task, task_type=task_type, context_files=context, output_files=output_files, verify=verify,
            max_attempts=max_attempts, model=model, allow_secrets=allow_secrets,
            allow_config_writes=allow_config_writes, verify_timeout=verify_timeout, progress=progress,
            think={"off": False, "on": True}.get(think, think), answer_form=answer_form,
        )
    return Result(result, result_text, exit_code=0 if result["state"] == "done" else 1)


async def _stats(engine: Engine) -> Result:
    return Result(engine.stats(), _stats_text)


def analyze(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(metavar="TASK", help="what the task asks for, in words")],
    *,
    file: Annotated[list[str] | None, typer.Option(
        "--file", metavar="F", show_default=False, help="a file the task is about (repeatable)")] = None,
    output_file: Annotated[list[str] | None, typer.Option(
        "--output-file", metavar="P", show_default=False, help="a file it would write (repeatable)")] = None,
    task_type: Annotated[TaskType | None, typer.Option("--type", show_default=False, help="task type")] = None,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Score a task for delegation (threshold 0.6)."""
    handler = partial(_analyze, task=task, files=list(file or []), output_files=list(output_file or []),
                      task_type=task_type)
    execute(ctx, handler, project=project, as_json=as_json, verbose=verbose)


def delegate(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(metavar="TASK", help="what the model must do")],
    *,
    output: Annotated[list[str], typer.Option(
        "--output", metavar="P[=DESCRIPTION]", show_default=False,
        help="file to write, with an optional description (repeatable)")],
    task_type: Annotated[TaskType, typer.Option("--type", help="task type")] = "generate",
    context: Annotated[list[str] | None, typer.Option(
        "--context", metavar="F", show_default=False, help="context file (repeatable)")] = None,
    verify: Annotated[str | None, typer.Option(
        "--verify", metavar="CMD", show_default=False,
        help="shell command run in the project root; exit 0 = passed")] = None,
    max_attempts: Annotated[int, typer.Option("--max-attempts", metavar="N", help="attempts before giving up")] = 3,
    verify_timeout: Annotated[float, typer.Option(
        "--verify-timeout", metavar="S", help="seconds the verify command may run")] = 300.0,
    model: Annotated[str | None, typer.Option(
        "--model", show_default=False, help="model to use (default: the session's)")] = None,
    allow_secrets: Annotated[bool, typer.Option(
        "--allow-secrets", help="send context files that look like secrets")] = False,
    allow_config_writes: Annotated[bool, typer.Option(
        "--allow-config-writes",
        help="let the run write configuration that runs code or grants permissions (.claude/settings.json, "
             ".mcp.json, .github/workflows/, ...); .git/ and .claude/workflow/ are never written")] = False,
    answer_form: Annotated[AnswerForm | None, typer.Option(
        "--answer-form", show_default=False,
        help="edits (search/replace blocks), whole (each file complete in a fenced block) or json (whole files "
             "in JSON); default: the session's, else by the rule `status` shows")] = None,
    think: Annotated[ThinkChoice, typer.Option(
        "--think", help="let a model that can think do so first (on or a level); off suits mechanical work")] = "off",
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Delegate a task to the local model, write its files and verify them."""
    handler = partial(
        _delegate, task=task, task_type=task_type, context=list(context or []), output=list(output), verify=verify,
        max_attempts=max_attempts, verify_timeout=verify_timeout, model=model, allow_secrets=allow_secrets,
        allow_config_writes=allow_config_writes, think=think, answer_form=answer_form,
    )
    execute(ctx, handler, project=project, as_json=as_json, verbose=verbose, stop_on_signals=True)


def batch(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help=(
        "JSON: a list of delegate requests, or {runs | template + glob, max_parallel, max_failures, max_attempts, "
        "parallel_verify}; - reads standard input"))],
    *,
    max_parallel: Annotated[int | None, typer.Option(
        "--max-parallel", metavar="N", show_default=False, help="children at once (default: the backend's slots)")
    ] = None,
    max_failures: Annotated[int | None, typer.Option(
        "--max-failures", metavar="N", show_default=False, help="stop after N failed children")] = None,
    max_attempts: Annotated[int | None, typer.Option(
        "--max-attempts", metavar="N", show_default=False, help="attempts per child")] = None,
    parallel_verify: Annotated[bool, typer.Option(
        "--parallel-verify", help="let children's verify commands run at the same time")] = False,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Spread one mechanical job over many files: one child run per request, in parallel up to the backend's slots."""
    handler = partial(_batch, file=file, max_parallel=max_parallel, max_failures=max_failures,
                      max_attempts=max_attempts, parallel_verify=parallel_verify)
    execute(ctx, handler, project=project, as_json=as_json, verbose=verbose, stop_on_signals=True)


def stats(
    ctx: typer.Context, *, project: ProjectOption = None, as_json: JsonOption = False, verbose: VerboseOption = False
) -> None:
    """Aggregate the delegation log: rates, tokens, time, by task type and by model."""
    execute(ctx, _stats, project=project, as_json=as_json, verbose=verbose)


def register(app: typer.Typer) -> None:
    for command in (analyze, delegate, batch, stats):
        app.command()(command)
