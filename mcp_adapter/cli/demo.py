"""`local-llm demo`: two end-to-end delegations on the embedded default, in a scratch project (kept, to inspect),
showing both outcomes a user must trust (issue 22 point 6): first a one-function file the tiny default model passes
(verified and written), then the function below, which it usually fails (rolled back); each ends in one plain sentence.

The task asks for a small Python function, and the verify command runs a check script that imports it and asserts
what it does, so the check really judges the model's code. The tiny default model (SmolLM2-135M) usually fails it;
the demo then says so plainly: the run rolled back and the project is as it was.

Exit code: 0 when the pipeline ran end to end, whether the model's code passed the check or not (the closing message
says which): the demo shows the plumbing (pack the context, generate, parse, journal, write atomically, verify,
retry with the error, roll back), and a failed check rolled back is that plumbing working. 1 when the run itself went
wrong (a conflict, a cancel, a backend error), 2 when it could not start (no model: the message says how to get one).
"""

from __future__ import annotations

import shlex
import sys
import tempfile
import textwrap
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from engine import Engine, Progress, Project, no_progress
from mcp_adapter.cli.common import JsonOption, ProjectOption, VerboseOption, execute
from mcp_adapter.cli.delegation import result_text
from mcp_adapter.cli.output import Result, progress_bar

__all__ = [
    "DEMO_CHECK",
    "DEMO_EASY_OUTPUT",
    "DEMO_EASY_TASK",
    "DEMO_EASY_VERIFY",
    "DEMO_OUTPUT",
    "DEMO_TASK",
    "DEMO_VERIFY",
    "Outcome",
    "delegate_demo",
    "delegate_easy",
    "outcome",
    "prepare_scratch",
    "register",
    "verdict",
]

DEMO_CONTEXT = "calc.py"
DEMO_SOURCE = '''def add(a: float, b: float) -> float:
    return a + b


def mean(values: list[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)
'''
DEMO_OUTPUT = "stats.py"
DEMO_TASK = (
    "Write stats.py with a function median(values: list[float]) -> float in the style of mean in calc.py: the middle "
    "value of the sorted values, the mean of the two middle values when there is an even number of them, and "
    "ValueError for an empty list"
)
DEMO_EASY_OUTPUT = "add.py"
DEMO_EASY_TASK = "Write add.py with one function, add(a, b), that returns the sum of a and b."
DEMO_EASY_VERIFY = (f"{shlex.quote(sys.executable)} -B -c "
                    "'from add import add; assert add(2, 3) == 5 and add(-1, 1) == 0'")
DEMO_CHECK = "check_stats.py"
DEMO_CHECK_SOURCE = '''"""The demo's check: does stats.median do what the task asked? Exit 0 when it does."""
import sys

from stats import median

CASES = [([3.0, 1.0, 2.0], 2.0), ([4.0, 1.0, 3.0, 2.0], 2.5), ([5.0], 5.0)]
for values, expected in CASES:
    got = median(list(values))
    if got != expected:
        sys.exit(f"median({values}) returned {got!r}, expected {expected!r}")
try:
    median([])
except ValueError:
    pass
else:
    sys.exit("median([]) did not raise ValueError")
print(f"stats.median: {len(CASES) + 1} checks passed")
'''
# -B: no bytecode. A retry may write a stats.py of the same size within the same second as the last one, and a
# cached .pyc would then be taken for it.
DEMO_VERIFY = f"{shlex.quote(sys.executable)} -B {DEMO_CHECK}"

DemoBackend = Literal["embedded", "ollama", "openai"]
Outcome = Literal["passed", "failed_check", "unusable_answer", "broken"]
PIPELINE_RAN: frozenset[Outcome] = frozenset({"passed", "failed_check", "unusable_answer"})
"""The outcomes where the pipeline ran end to end (exit 0); `broken` means the run itself went wrong (exit 1)."""


def prepare_scratch(scratch: Path) -> None:
    """The scratch project: the context file and the check script (kept as they are when already there)."""
    scratch.mkdir(parents=True, exist_ok=True)
    for name, text in ((DEMO_CONTEXT, DEMO_SOURCE), (DEMO_CHECK, DEMO_CHECK_SOURCE)):
        if not (scratch / name).exists():
            (scratch / name).write_text(text, encoding="utf-8")


async def delegate_demo(engine: Engine, *, progress: Progress = no_progress) -> dict[str, Any]:
    """The demo's delegation on an engine whose model is ready; its result, with the path the run took."""
    result = await engine.delegate(
        task=DEMO_TASK, task_type="generate", context_files=[DEMO_CONTEXT],
        output_files=[{"path": DEMO_OUTPUT, "description": "Python: def median(values: list[float]) -> float"}],
        verify=DEMO_VERIFY, max_attempts=3, progress=progress,
    )
    path = [f"{e['from']} -{e['event']}-> {e['to']}" for e in engine.run_view(result["run_id"])["events"]
            if e["from"] and e["from"] != e["to"]]
    return {**result, "path": path}


async def delegate_easy(engine: Engine, *, progress: Progress = no_progress) -> dict[str, Any]:
    """The demo's first delegation: a one-function file that even the tiny model gets right."""
    return await engine.delegate(
        task=DEMO_EASY_TASK, task_type="generate",
        output_files=[{"path": DEMO_EASY_OUTPUT, "description": "Python: def add(a, b)"}],
        verify=DEMO_EASY_VERIFY, max_attempts=3, progress=progress,
    )


def outcome(r: dict[str, Any]) -> Outcome:
    passed = (r.get("verification") or {}).get("passed")
    error = r.get("error") or ""
    if r["state"] == "done" and passed:
        return "passed"
    if r["state"] != "failed" or r.get("conflicts"):
        return "broken"
    if passed is False:
        return "failed_check"
    if error.startswith("generation failed") and "backend error" not in error:
        return "unusable_answer"
    return "broken"


def verdict(r: dict[str, Any], *, backend: str, output: str = DEMO_OUTPUT, verify: str = DEMO_VERIFY) -> str:
    """The closing message, in plain words: did the model's code pass the check, and what that means."""
    model = r.get("model") or "the model"
    tiny = backend == "embedded" and "smollm" in model.lower()
    who = f"The tiny embedded model ({model})" if tiny else f"The model ({model})"
    real_work = (" That model only proves the plumbing; use a real coder model on Ollama for real work "
                 "(`local-llm capability` recommends one for your VRAM)." if tiny else "")
    match outcome(r):
        case "passed":
            return (f"{who} wrote {output} and it passed the check `{verify}`: the pipeline ran end to end "
                    f"and the file is kept.")
        case "failed_check":
            return (f"{who} wrote code that failed the check `{verify}` (after {r['attempts']} attempt(s)); "
                    f"the run rolled back and the demo project's files are unchanged. The pipeline worked: the check "
                    f"caught the bad code and nothing of it was kept.{real_work}")
        case "unusable_answer":
            return (f"{who} never gave an answer the engine could use ({(r.get('error') or '').splitlines()[0]}); "
                    f"nothing was written and the demo project's files are unchanged.{real_work}")
    first = (r.get("error") or "no error recorded").splitlines()[0]
    return f"The run did not end the way the demo expects (state {r['state']}): {first}"


def _demo_text(r: dict[str, Any]) -> str:
    easy = r["easy"]
    lines = [f"demo project: {r['project']}", "", f"1. a task the model can do: {DEMO_EASY_TASK}", result_text(easy),
             f"verify command: {DEMO_EASY_VERIFY}",
             textwrap.fill(easy["message"], width=100, break_on_hyphens=False, break_long_words=False), "",
             f"2. a task beyond it: {DEMO_TASK} (context: {DEMO_CONTEXT})", result_text(r)]
    lines.append(f"verify command: {DEMO_VERIFY}")
    if (r.get("verification") or {}).get("passed"):  # a failed one's output is in result_text already
        lines.append(f"verify output: {(r['verification'].get('output_tail') or '').strip()}")
    lines.append("run path: " + ", ".join(r["path"]))
    if r["preview"]:
        shown = r["preview"].splitlines()[:12]
        lines += [f"--- {DEMO_OUTPUT} (first {len(shown)} lines) ---", *shown, "---"]
    prog = sys.argv[0] if sys.argv[0].endswith("local-llm") else "local-llm"
    lines.append(f"inspect: {prog} --project {r['project']} run {r['run_id']}")
    lines += ["", textwrap.fill(r["message"], width=100, break_on_hyphens=False, break_long_words=False)]
    return "\n".join(lines)


async def _demo(engine: Engine, *, directory: str | None, backend: str) -> Result:
    # `engine` is the --project one; the demo runs in its own scratch project so it never touches the user's files.
    scratch = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="local-llm-demo-"))
    prepare_scratch(scratch)
    demo = Engine(Project.resolve(scratch))
    try:
        with progress_bar() as progress:
            await demo.enable(llm=True, backend=backend, progress=progress)
            easy = await delegate_easy(demo, progress=progress)
            result = await delegate_demo(demo, progress=progress)
    finally:
        demo.close()
    written = scratch / DEMO_OUTPUT
    preview = written.read_text(encoding="utf-8", errors="replace") if result["state"] == "done" else ""
    kind, easy_kind = outcome(result), outcome(easy)
    easy = {**easy, "outcome": easy_kind, "verify_command": DEMO_EASY_VERIFY,
            "message": verdict(easy, backend=backend, output=DEMO_EASY_OUTPUT, verify=DEMO_EASY_VERIFY)}
    result = {**result, "project": str(scratch), "preview": preview, "outcome": kind,
              "message": verdict(result, backend=backend), "verify_command": DEMO_VERIFY, "easy": easy}
    return Result(result, _demo_text, exit_code=0 if {kind, easy_kind} <= PIPELINE_RAN else 1)


def demo(
    ctx: typer.Context,
    *,
    directory: Annotated[str | None, typer.Option(
        "--dir", metavar="DIR", show_default=False,
        help="scratch project directory (default: a new temporary one)")] = None,
    backend: Annotated[DemoBackend, typer.Option("--backend", help="backend to run the demo on")] = "embedded",
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """End-to-end delegation on the embedded default, in a scratch project (exit 0 once the pipeline ran end to
    end, even when the model's code failed the check: the last line says which)."""
    handler = partial(_demo, directory=directory, backend=backend)
    execute(ctx, handler, project=project, as_json=as_json, verbose=verbose)


def register(app: typer.Typer) -> None:
    app.command()(demo)
