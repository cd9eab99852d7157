"""What every reliability scenario shares: the result row, the Ollama double, a project enabled on it, CLI runs and
journal checks.

Everything runs against real components (the `local-llm` CLI or server in subprocesses, the SQLite journal) except
Ollama, which cannot be installed here: engine/testing/ollama_double/ stands in for its HTTP API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.delegation.metrics import read_log
from engine.project import Project
from engine.store.db import EventRecord, MachineRecord, Store
from engine.testing.ollama_double import OllamaDouble

__all__ = [
    "MODEL",
    "REPO",
    "ScenarioResult",
    "answer_for",
    "cli",
    "cli_env",
    "enabled_project",
    "journal_problems",
    "log_problems",
    "started_double",
    "temp_files",
]

REPO = Path(__file__).resolve().parents[2]
MODEL = "deepseek-coder:6.7b"
CLI_TIMEOUT_S = 120.0


@dataclass
class ScenarioResult:
    id: str
    scenario: str
    tried: int = 0
    survived: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    """A scenario's own figures beyond the counts (R5: edits by verdict, conflicts), in the JSON output."""

    def record(self, problems: Sequence[str], label: str) -> None:
        """One case: survived when it has no problem, else lost (the first problems are kept as notes)."""
        self.tried += 1
        if problems:
            self.lost += 1
            if len(self.notes) < 8:
                self.notes.append(f"{label}: {'; '.join(problems)[:400]}")
        else:
            self.survived += 1

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "scenario": self.scenario, "tried": self.tried, "survived": self.survived,
                "lost": self.lost, "notes": self.notes, "seconds": round(self.seconds, 1),
                **({"figures": self.figures} if self.figures else {})}


@contextmanager
def started_double(*, pullable: bool = False) -> Iterator[OllamaDouble]:
    """The double with MODEL pulled; `pullable`: also in its registry, so a removed MODEL can be pulled again."""
    with OllamaDouble(models=[MODEL], registry=[MODEL] if pullable else ()) as double:
        yield double


def cli_env(project: Path, double: OllamaDouble, **extra: str) -> dict[str, str]:
    env = {**os.environ, "LOCAL_LLM_PROJECT": str(project), "OLLAMA_HOST": double.host, "PYTHONUNBUFFERED": "1"}
    for key in ("LOCAL_LLM_TEST_PAUSE_IN", "LOCAL_LLM_TEST_PAUSE_FILE"):
        env.pop(key, None)  # only the runs that ask for the pause hook get it
    env.update(extra)
    return env


def cli(env: Mapping[str, str], *args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mcp_adapter", *args], env=dict(env), capture_output=True, check=False,
                          text=True, timeout=timeout, cwd=REPO)


def enabled_project(root: Path, double: OllamaDouble) -> Path:
    """A project directory whose session is enabled on the double (by the real CLI, as a user would)."""
    root.mkdir(parents=True, exist_ok=True)
    done = cli(cli_env(root, double), "enable", "--backend", "ollama", "--llm", MODEL, "--json")
    if done.returncode != 0:
        raise RuntimeError(f"enable failed: {done.stderr[-2000:]}")
    return root


def answer_for(files: Mapping[str, str]) -> str:
    return json.dumps({"files": [{"path": p, "content": c} for p, c in files.items()]})


def temp_files(directory: Path) -> list[str]:
    """Leftovers of an interrupted atomic write (engine.delegation.writes names them `.<name>.<random>.tmp`)."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*.tmp") if ".claude" not in p.parts)


def journal_problems(store: Store, record: MachineRecord) -> list[str]:
    """What is wrong with one run's journal: versions not 1..n, not exactly one `start`, generations (`generated`
    or `generation_failed`) not matching the attempts recorded in the run's data."""
    events: list[EventRecord] = store.events(record.id)
    problems = []
    versions = [e.version for e in events]
    if versions != list(range(1, len(versions) + 1)):
        problems.append(f"event versions not contiguous: {versions}")
    if versions and versions[-1] != record.version:
        problems.append(f"last event version {versions[-1]} != run version {record.version}")
    names = [e.event for e in events]
    if names.count("start") != 1 and record.state != "cancelled":
        problems.append(f"{names.count('start')} start events")
    attempts = int(record.data.get("attempt", 0))
    generated = names.count("generated") + names.count("generation_failed")
    aborted = "abort" in names  # a fault that is not retried ends the attempt before any generation
    if generated != attempts and not (aborted and generated == attempts - 1):
        problems.append(f"{generated} generations journaled for {attempts} attempt(s): {names}")
    return problems


def log_problems(project: Path, record: MachineRecord) -> list[str]:
    """The delegation log must hold exactly one `run` line for a finished run, agreeing with the journal."""
    lines = [r for r in read_log(Project.resolve(project).delegation_log).records
             if r.get("event") == "run" and r.get("run_id") == record.id]
    if len(lines) != 1:
        return [f"{len(lines)} delegation-log lines for the run"]
    line = lines[0]
    problems = []
    if line.get("state") != record.state:
        problems.append(f"log state {line.get('state')} != journal state {record.state}")
    if int(line.get("attempts", -1)) != int(record.data.get("attempt", 0)):
        problems.append(f"log attempts {line.get('attempts')} != journal {record.data.get('attempt')}")
    return problems
