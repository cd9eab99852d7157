"""R7: a damaged state.db and damaged rows, met by every CLI command and by the MCP server.

A template project is built once: a session enabled on the Ollama double, finished delegations, and one run left
interrupted by a process that died. For each damage (bench/reliability/damage.py: a truncated file, random bytes over
the header or over pages of the machines table, a file that is not a database; a run whose data is not JSON, a run in
a state no machine declares, a session whose data is not JSON), a fresh copy of the project is damaged and

- every command runs on it as a real `local-llm` subprocess. A case survives when the command ends within its
  deadline, prints no traceback, exits 0, 1 or 3, and says what the user needs: on a damaged file, the file and the
  fix (`local-llm db move-aside`) for every command that reads the database; on a damaged row, `runs` lists the row
  with its problem and `resume` reports it by its id while the interrupted run resumes; finally `db move-aside` (or
  `db forget ID`) repairs the copy and `status` answers again;
- `local-llm serve` starts on it (the SDK's stdio client): a case survives when `status` answers (the problem, for a
  damaged file), a call that needs the database answers or fails with a tool error, the server is still up after
  them, and its stderr holds no traceback.

The notes count the tracebacks (which must be 0) and the servers that went down.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from bench.reliability.common import MODEL, REPO, ScenarioResult, answer_for, cli, cli_env, started_double
from bench.reliability.damage import DAMAGES, FILE_DAMAGES, checkpoint
from engine import Engine, Project
from engine.store.machines import PersistedMachines
from engine.testing.ollama_double import OllamaDouble
from states import DELEGATION

__all__ = ["COMMANDS", "run"]

DEAD_OWNER = f"{socket.gethostname()}:999999999:0"
"""A process token whose process cannot exist: its run is interrupted, and recovery takes it over."""
INTERRUPTED = "run-r7-interrupted"
CASE_DEADLINE_S = 60.0

Argv = Callable[[str], list[str]]
"""A command line, given the id of a run to name (the damaged one when a run row is damaged)."""

COMMANDS: dict[str, Argv] = {
    "status": lambda run: ["status"],
    "status --json": lambda run: ["status", "--json"],
    "capability": lambda run: ["capability", "--json"],
    "stats": lambda run: ["stats"],
    "analyze": lambda run: ["analyze", "write docstrings for util.py", "--file", "util.py"],
    "runs": lambda run: ["runs", "--json"],
    "run ID": lambda run: ["run", run],
    "diagram --run ID": lambda run: ["diagram", "delegation", "--run", run],
    "cancel ID": lambda run: ["cancel", run],
    "resume": lambda run: ["resume", "--json"],
    "delegate": lambda run: ["delegate", "write notes", "--output", "notes.txt", "--json"],
    "enable": lambda run: ["enable", "--backend", "ollama", "--llm", MODEL],
    "disable": lambda run: ["disable"],
    "db check": lambda run: ["db", "check"],
}
NO_DATABASE = ("capability", "stats", "analyze")
"""Commands that never read the database: they must work on a damaged one."""
SHORT_COMMANDS = ("status", "runs", "run ID", "resume", "delegate", "stats")
SHORT_DAMAGES = ("not a database", "pages", "bad JSON in a run", "unknown state in a run")


@dataclass
class Tally:
    tracebacks: int = 0
    servers_down: int = 0


def _template(root: Path, double: OllamaDouble) -> list[str]:
    """The healthy project every case copies: enabled, three finished runs, one interrupted; the finished run ids."""
    async def build() -> list[str]:
        engine = Engine(Project.resolve(root))
        try:
            await engine.enable(llm=MODEL, backend="ollama")
            ids = []
            for i in range(3):
                double.reply(answer_for({f"out{i}.txt": f"out {i}\n"}))
                ids.append((await engine.delegate(task=f"write out{i}", output_files=[f"out{i}.txt"]))["run_id"])
            runs = PersistedMachines(engine.store, DELEGATION)
            runs.create(INTERRUPTED, {"task": "write late.txt", "task_type": "generate", "max_attempts": 1,
                                      "output_files": [{"path": "late.txt", "description": ""}]})
            runs.fire(INTERRUPTED, "start", data={"attempt": 1})
            with engine.store.transaction() as tx:
                tx.set_owner(INTERRUPTED, DEAD_OWNER)
            return ids
        finally:
            engine.close()

    (root / "util.py").write_text("def double(x):\n    return x * 2\n")
    saved = os.environ.get("OLLAMA_HOST")
    os.environ["OLLAMA_HOST"] = double.host  # the in-process backend reads it when the session's backend is built
    try:
        ids = anyio.run(build)
    finally:
        if saved is None:
            os.environ.pop("OLLAMA_HOST", None)
        else:
            os.environ["OLLAMA_HOST"] = saved
    checkpoint(Project.resolve(root).state_db)
    return ids


def _fresh_copy(template: Path, target: Path, damage: str, seed: int) -> tuple[Path, str]:
    shutil.copytree(template, target)
    state_db = Project.resolve(target).state_db
    described = DAMAGES[damage](state_db, random.Random(seed))
    return state_db, described


def _victim(described: str) -> str | None:
    """The run a row damage hit ("run <id>: ...")."""
    return described.split()[1].rstrip(":") if described.startswith("run ") else None


def _command_problems(name: str, damage: str, done: Any, state_db: Path, victim: str | None) -> list[str]:
    problems = []
    said = done.stdout + done.stderr
    if "Traceback" in done.stderr:
        problems.append("traceback: " + done.stderr.strip().splitlines()[-1][:200])
    if done.returncode not in (0, 1, 3):
        problems.append(f"exit code {done.returncode}")
    if damage in FILE_DAMAGES and name in NO_DATABASE and done.returncode != 0:
        problems.append(f"a command that needs no database failed: {said[-200:]}")
    if damage in FILE_DAMAGES and name not in NO_DATABASE and (
            done.returncode == 0 or str(state_db) not in said or "local-llm db" not in said):
        problems.append(f"does not name the file and the fix (exit {done.returncode}): {said[-300:]}")
    if victim and name == "runs":
        rows = {r["run_id"]: r for r in json.loads(done.stdout or "[]")} if done.returncode == 0 else {}
        if not rows.get(victim, {}).get("damaged"):
            problems.append(f"runs does not list {victim} as damaged")
        if len(rows) < 4:
            problems.append(f"runs lists {len(rows)} runs, expected the 4 of the project")
    if victim and name == "resume":
        report = json.loads(done.stdout) if done.stdout.strip() else {}
        # A finished run whose data is damaged needs no resume; an unfinished one (or one in an unknown state) is
        # reported by its id, and the interrupted run, when it is not the damaged one, resumes.
        unfinished = victim == INTERRUPTED or damage == "unknown state in a run"
        if unfinished and victim not in report.get("errors", {}):
            problems.append(f"resume does not report {victim}: {report.get('errors')}")
        if victim != INTERRUPTED and INTERRUPTED not in report.get("resumed", []) + report.get("aborted", []):
            problems.append(f"the interrupted run was not resumed: {said[-200:]}")
    return problems


def _repair(env: dict[str, str], damage: str, victim: str | None) -> list[str]:
    """The fix the messages give, then `status` must answer."""
    if damage in FILE_DAMAGES:
        fixed = cli(env, "db", "move-aside")
        if fixed.returncode != 0 and "--force" in fixed.stderr:  # the header's schema version was hit
            fixed = cli(env, "db", "move-aside", "--force")
    else:
        fixed = cli(env, "db", "forget", victim or "session")
    problems = [] if fixed.returncode == 0 else [f"the fix failed: {fixed.stderr[-300:]}"]
    status = cli(env, "status", "--json")
    if status.returncode != 0 or json.loads(status.stdout or "{}").get("state") == "unavailable":
        problems.append(f"status after the fix: {status.stdout[-200:]}{status.stderr[-200:]}")
    return problems


async def _serve_case(project: Path, double: OllamaDouble, errlog_path: Path) -> list[str]:
    env = {**cli_env(project, double), "PYTHONUNBUFFERED": "1"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_adapter", "serve"], env=env,
                                   cwd=str(REPO))
    problems = []
    with errlog_path.open("w+") as errlog:
        try:
            with anyio.fail_after(CASE_DEADLINE_S):
                async with Client(stdio_client(params, errlog=errlog), read_timeout_seconds=30) as client:
                    status = await client.call_tool("local_llm", {"action": "status"})
                    if status.is_error or not status.structured_content:
                        problems.append(f"status did not answer: {status.content}")
                    runs = await client.call_tool("local_llm", {"action": "runs"})
                    if runs.is_error and "local-llm db" not in str(runs.content):
                        problems.append(f"runs failed without the fix: {str(runs.content)[:200]}")
                    again = await client.call_tool("local_llm", {"action": "status"})
                    if again.is_error:
                        problems.append("the server stopped answering")
        except Exception as exc:  # the server went down (the client lost it) or hung
            problems.append(f"server down: {type(exc).__name__}: {exc}"[:300])
        errlog.seek(0)
        stderr = errlog.read()
    if "Traceback" in stderr:
        problems.append("traceback on the server's stderr")
    return problems


def _cases(short: bool) -> list[tuple[str, str]]:
    damages = SHORT_DAMAGES if short else tuple(DAMAGES)
    commands = SHORT_COMMANDS if short else tuple(COMMANDS)
    return [(d, c) for d in damages for c in (*commands, "serve")]


def _run_cases(cases: Sequence[tuple[str, str]], result: ScenarioResult, seed: int) -> Tally:
    tally = Tally()
    with started_double() as double, tempfile.TemporaryDirectory(prefix="rel-r7-") as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        finished = _template(template, double)
        repaired: set[str] = set()
        for index, (damage, command) in enumerate(cases):
            project = Path(tmp) / f"case{index:03d}"
            state_db, described = _fresh_copy(template, project, damage, seed + index)
            victim = _victim(described)
            label = f"{damage} ({described}), {command}"
            env = cli_env(project, double)
            started = time.monotonic()
            if command == "serve":
                problems = anyio.run(_serve_case, project, double, Path(tmp) / f"serve{index:03d}.err")
                tally.servers_down += any("server down" in p for p in problems)
                tally.tracebacks += any("traceback" in p for p in problems)
            else:
                done = cli(env, *COMMANDS[command](victim or finished[0]), timeout=CASE_DEADLINE_S)
                problems = _command_problems(command, damage, done, state_db, victim)
                tally.tracebacks += "Traceback" in done.stderr
                if damage not in repaired:  # once per damage: the fix the messages give works
                    repaired.add(damage)
                    problems += _repair(env, damage, victim)
            if time.monotonic() - started > CASE_DEADLINE_S:
                problems.append("took longer than its deadline")
            result.record(problems, label)
    return tally


def run(*, short: bool, seed: int) -> ScenarioResult:
    result = ScenarioResult("R7", "damaged database and rows: every command and the server")
    started = time.monotonic()
    tally = _run_cases(_cases(short), result, seed)
    result.notes.insert(0, f"tracebacks {tally.tracebacks}, servers down {tally.servers_down}")
    result.seconds = time.monotonic() - started
    return result
