"""`local-llm eval`: the built-in suite of mechanical tasks, each a real delegation in a scratch project, judged by a
hidden check the model never sees; `--json FILE` keeps the figures, `--compare A B` sets two such files side by side.

Exit code: 0 when the suite ran end to end, whatever the model scored; 1 when the eval itself went wrong (a run hit a
conflict, was cancelled or lost its backend, or a hidden check reached a prompt: the task's outcome is `broken`);
2 for bad arguments, a suite or report file that cannot be used, or no model to enable.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from engine import (
    ANSWER_FORMS,
    BACKENDS,
    Engine,
    EvalTask,
    InvalidArgument,
    Project,
    compare_reports,
    load_report,
    load_suite,
    run_suite,
    select_tasks,
)
from mcp_adapter.cli.common import ProjectOption, VerboseOption, execute
from mcp_adapter.cli.exit_codes import USAGE
from mcp_adapter.cli.output import Result, progress_bar, table

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["TIERS", "builtin_suite", "compare_text", "eval_text", "register"]

Backend = Literal[BACKENDS]  # type: ignore[valid-type]
AnswerForm = Literal[ANSWER_FORMS]  # type: ignore[valid-type]
STDOUT = "-"


TIERS = {"standard": "resources/eval", "trivial": "resources/eval-trivial"}
"""The built-in suites: `standard`, mechanical work as it is delegated (17 tasks); `trivial`, one-function files and
constants that even the embedded 135M model can pass, so that a regression in prompting, packing or parsing shows
on the real embedded model (CI runs it with the default answer form and a hard floor)."""
Tier = Literal["standard", "trivial"]


def builtin_suite(tier: str = "standard") -> Path:
    """A suite shipped with the package: one directory per task (engine/evaluation/tasks.py)."""
    if tier not in TIERS:
        raise InvalidArgument("--tier", f"one of {', '.join(TIERS)}", tier)
    return Path(str(importlib.resources.files("mcp_adapter").joinpath(TIERS[tier])))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _group(*parts: str | RenderableType) -> RenderableType:
    from rich.console import Group
    from rich.text import Text

    return Group(*(Text(p) if isinstance(p, str) else p for p in parts))


def eval_text(report: dict[str, Any]) -> RenderableType:
    """The per-task table and the totals, for people."""
    rows = [{**r, "result": r["outcome"], "seconds": f"{r['seconds']:.1f}"} for r in report["tasks"]]
    grid = table(rows, ["id", "task_type", "language", "result", "attempts", "tokens", "seconds", "conflicts"])
    t = report["totals"]
    lines = [
        "",
        f"model: {report['model']} on {report['backend']}, answer form {report['answer_form'] or '-'}",
        (f"passed: {t['passed']}/{t['tasks']} ({_pct(t['pass_rate'])}); first try: {t['first_try']}/{t['tasks']} "
         f"({_pct(t['first_try_rate'])})"),
        (f"per passed task: {_num(t['tokens_per_passed'], 0)} tokens, {_num(t['seconds_per_passed'])} s "
         f"(all {t['tokens']:,} tokens and {t['seconds']:.1f} s of the runs, failures included)"),
        "by type: " + ", ".join(f"{k} {g['passed']}/{g['tasks']}" for k, g in t["by_type"].items()),
    ]
    if t["broken"]:
        lines.append(f"broken: {t['broken']} task(s): the eval itself went wrong there (see `error` in --json)")
    if report.get("written_to"):
        lines.append(f"report: {report['written_to']}")
    return _group(grid, "\n".join(lines))


def _side(side: dict[str, Any] | None) -> str:
    if side is None:
        return "-"
    return f"{'pass' if side['passed'] else side['outcome']} ({side['attempts']}x, {side['tokens']} tok)"


def compare_text(c: dict[str, Any]) -> RenderableType:
    """Two reports side by side: each task, then the totals over the tasks both ran."""
    heads = [f"{k.upper()}: {c[k]['file']}: {c[k]['model']} on {c[k]['backend']}, answer form "
             f"{c[k]['answer_form'] or '-'}, {c[k]['when']}" for k in ("a", "b")]
    tasks = table([{"id": t["id"], "type": t["task_type"], "A": _side(t["a"]), "B": _side(t["b"]),
                    "change": t["change"]} for t in c["tasks"]], ["id", "type", "A", "B", "change"])

    def cell(key: str, value: Any) -> str:
        if value is None:
            return "-"
        if key.endswith("_rate"):
            return _pct(value) if not isinstance(value, float) or abs(value) <= 1 else str(value)
        return _num(value, 0 if key in ("tasks", "passed", "first_try", "tokens", "tokens_per_passed") else 1)

    totals = table([{"figure": k, "A": cell(k, v["a"]), "B": cell(k, v["b"]),
                     "B - A": ("+" if (v["diff"] or 0) > 0 else "") + cell(k, v["diff"])}
                    for k, v in c["totals"].items()], ["figure", "A", "B", "B - A"])
    notes = [f"totals over the {c['common_tasks']} task(s) both ran"]
    if c["only_a"] or c["only_b"]:
        notes.append(f"only in A: {', '.join(c['only_a']) or '-'}; only in B: {', '.join(c['only_b']) or '-'}")
    notes.append(f"gained: {', '.join(c['gained']) or '-'}; lost: {', '.join(c['lost']) or '-'}")
    return _group("\n".join(heads), tasks, totals, "\n".join(notes))


def _list_text(tasks: list[dict[str, Any]]) -> RenderableType:
    rows = [{**t, "change": "edit" if t["edits_existing"] else "new file",
             "lines": t["largest_file_lines"] or "-"} for t in tasks]
    return table(rows, ["id", "task_type", "language", "change", "lines", "summary"])


def _write(path: str, data: dict[str, Any]) -> str:
    target = Path(path).expanduser()
    try:
        target.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise InvalidArgument("--json", "a file that can be written", f"{path}: {exc.strerror or exc}") from None
    return str(target)


def _suite(suite_dir: str | None, tier: str) -> list[EvalTask]:
    return load_suite(Path(suite_dir).expanduser() if suite_dir else builtin_suite(tier))


def _only(only: list[str] | None) -> list[str] | None:
    return None if not only else [i for item in only for i in item.split(",")]


async def _compare(paths: tuple[str, str], json_file: str | None) -> Result:
    a, b = (load_report(Path(p).expanduser()) for p in paths)
    comparison = compare_reports(a, b, names=paths)
    if json_file and json_file != STDOUT:
        _write(json_file, comparison)
    return Result(comparison, compare_text)


async def _eval(
    engine: Engine, *, llm: str, backend: str | None, answer_form: str | None, only: list[str] | None,
    max_attempts: int | None, json_file: str | None, scratch: str | None, suite_dir: str | None, listing: bool,
    compare: tuple[str, str] | None, tier: str = "standard",
) -> Result:
    # `engine` is the --project one; the eval runs each task in a scratch project of its own.
    if compare is not None:
        return await _compare(compare, json_file)
    suite = _suite(suite_dir, tier)
    tasks = select_tasks(suite, _only(only))
    if listing:
        return Result([t.describe() for t in tasks], _list_text)
    if max_attempts is not None and not 1 <= max_attempts <= 10:
        raise InvalidArgument("--max-attempts", "an integer from 1 to 10", max_attempts)
    if scratch is not None and Path(scratch).exists() and any(Path(scratch).iterdir()):
        raise InvalidArgument("--dir", "a new or empty directory", scratch)
    with progress_bar() as progress:
        report = await run_suite(
            tasks, open_engine=lambda root: Engine(Project.resolve(root)), llm=llm, backend=backend,
            answer_form=answer_form, max_attempts=max_attempts, scratch=Path(scratch) if scratch else None,
            progress=progress, suite_size=len(suite),
        )
    if json_file and json_file != STDOUT:
        report = {**report, "written_to": _write(json_file, report)}
    return Result(report, eval_text, exit_code=1 if report["totals"]["broken"] else 0)


def eval_command(
    ctx: typer.Context,
    *,
    llm: Annotated[str, typer.Option(
        "--llm", metavar="SPEC", help="the model: `true` (the backend's default), MODEL, or MODEL:persist")] = "true",
    backend: Annotated[Backend | None, typer.Option(
        "--backend", show_default=False,
        help="default: $LOCAL_LLM_BACKEND, else Ollama when reachable or installed, else embedded")] = None,
    answer_form: Annotated[AnswerForm | None, typer.Option(
        "--form", "--answer-form", show_default=False,
        help="edits (search/replace blocks), whole (each file complete in a fenced block) or json (whole files "
             "in JSON); default: by the rule `status` shows (whole on the embedded model)")] = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", metavar="IDS", show_default=False,
        help="run only these tasks (comma-separated ids, repeatable; `--list` shows them)")] = None,
    max_attempts: Annotated[int | None, typer.Option(
        "--max-attempts", metavar="N", show_default=False,
        help="attempts per task (default: each task's own, else 3)")] = None,
    json_file: Annotated[str | None, typer.Option(
        "--json", metavar="FILE", show_default=False,
        help="write the report (or the comparison) as JSON to FILE; `-` prints it on stdout instead of the "
             "table")] = None,
    compare: Annotated[tuple[str, str] | None, typer.Option(
        "--compare", metavar="A B", show_default=False,
        help="compare two reports written by --json instead of running the suite")] = None,
    scratch: Annotated[str | None, typer.Option(
        "--dir", metavar="DIR", show_default=False,
        help="keep each task's scratch project under DIR (new or empty; default: a temporary one, removed)")] = None,
    suite_dir: Annotated[str | None, typer.Option(
        "--suite", metavar="DIR", show_default=False,
        help="a suite of your own: a directory of task directories (default: the built-in suite)")] = None,
    tier: Annotated[Tier, typer.Option(
        "--tier", help="the built-in suite to run: standard (mechanical work as delegated) or trivial (one-function "
                       "files and constants a 135M model can pass)")] = "standard",
    listing: Annotated[bool, typer.Option("--list", help="list the suite's tasks and exit")] = False,
    project: ProjectOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Run the built-in suite of mechanical tasks on a model: pass rate, first-try rate, tokens and seconds per
    passed task (exit 0 once the suite ran, whatever the score; 1 when the eval itself went wrong)."""
    if compare is not None and (only or max_attempts or scratch or suite_dir or listing or backend or answer_form
                                or llm != "true" or tier != "standard"):
        typer.echo(f"{ctx.command_path}: --compare takes no options of a run (only --json)", err=True)
        raise typer.Exit(USAGE)
    if suite_dir and tier != "standard":
        typer.echo(f"{ctx.command_path}: --tier picks a built-in suite; --suite gives your own: use one of them",
                   err=True)
        raise typer.Exit(USAGE)
    handler = partial(_eval, llm=llm, backend=backend, answer_form=answer_form, only=only,
                      max_attempts=max_attempts, json_file=json_file, scratch=scratch, suite_dir=suite_dir,
                      listing=listing, compare=compare, tier=tier)
    execute(ctx, handler, project=project, as_json=json_file == STDOUT, verbose=verbose, stop_on_signals=True)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
