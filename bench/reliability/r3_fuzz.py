"""R3: property-based fuzzing (hypothesis) of every action of the `local_llm` MCP tool, through the real server.

The calls go through `Client(build_server(engine))`, so the SDK's argument validation and the adapter's checks run
as they do for a real client; delegations are answered by a scripted in-process backend (fast, writes every path
it is asked for). Arguments mix valid values with hostile ones: `..`, absolute paths, symlinks out of the project
(to a file, to a directory, dangling), NUL bytes, 4096-character names, the project's own journal, a 5 MB and a
binary context file, wrong types. After every call:

- the call answered: a structured result, or `is_error` with a text that says what was wrong (not an internal error
  or a bare "Error executing tool" without a validation detail);
- a delegation that ran did not end in an internal error;
- nothing outside the project changed (a sentinel directory, which the symlinks point into, is compared);
- no temp file of an atomic write is left in the project;
- the server still answers `status`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
from hypothesis import strategies as st
from mcp import Client

from bench.reliability.common import MODEL, ScenarioResult, started_double, temp_files
from bench.reliability.fuzzing import counting_runner
from engine import Engine, Project
from engine.testing.scripted import ScriptedBackend, use_backend
from mcp_adapter.server import ACTIONS, build_server

__all__ = ["arguments", "explicit_examples", "run"]

CALL_DEADLINE_S = 60.0
BIG_BYTES = 5 * 1024 * 1024
SAFE_VERIFY = (None, "true", "false", "exit 3", "", "   ", "test -s ok/out.txt")
"""Verify commands are shell commands by design: the fuzzer only picks harmless ones."""


def _fixtures(root: Path, outside: Path) -> dict[str, bytes]:
    """Context files of every awkward kind, and symlinks that lead out of the project."""
    files = {
        "ctx/small.py": b"def f():\n    return 1\n",
        "ctx/big.txt": (b"x" * 1023 + b"\n") * (BIG_BYTES // 1024),
        "ctx/binary.bin": bytes(range(256)) * 64,
        "ctx/latin1.txt": "caf\xe9\n".encode("latin-1"),
        "ctx/.env": b"TOKEN=secret\n",
        "ctx/key.txt": b"-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n",
        "ctx/empty.txt": b"",
    }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    (outside / "secret.txt").write_text("outside the project\n")
    (outside / "dir").mkdir()
    os.symlink(outside / "secret.txt", root / "link_file")
    os.symlink(outside, root / "link_dir")
    os.symlink(outside / "missing.txt", root / "link_dangling")
    os.symlink(root / "ctx", root / "link_inside")
    return files


def _hostile_paths(outside: Path) -> list[str]:
    return [
        "..", "../outside/x.txt", "a/../../outside/x.txt", "a/../b.txt", str(outside / "abs.txt"), "/etc/passwd",
        "/tmp", "link_file", "link_dir/x.txt", "link_dir/dir/y.txt", "link_dangling", "link_inside/small.py",
        "link_inside/new.txt", "x\x00y.txt", "n" * 4096, "d/" * 1500 + "f", "~/x.txt", "C:\\x.txt",
        "..\\outside\\x.txt", "", " ", ".", "./", "ctx/", "ctx", "ok/out.txt", "ok/../ok/two.txt",
        "ünï/ファイル.txt", "a:b.txt", "-rf", "*", "a\ud800b.txt", "0/0", "0", "ctx/small.py/x", "ok/./out.txt",
        ".claude/workflow/state.db", ".claude/workflow/delegation-log.jsonl",
        ".claude/workflow/engine.log", "ctx/small.py", "ctx/big.txt", "ctx/binary.bin", "ctx/latin1.txt", "ctx/.env",
        "ctx/key.txt", "ctx/empty.txt", "nonexistent.txt", "n" * 255 + ".txt", "n" * 256 + ".txt",
    ]


def _mostly(valid: st.SearchStrategy[Any], rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` 19 times in 20: a wrong type in any field stops the call at the SDK's validation, and the hostile
    values must reach the engine to test it."""
    return st.sampled_from(range(20)).flatmap(lambda i: rare if i == 19 else valid)


def arguments(outside: Path, known_runs: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for one action: the fields it uses, each valid in type with hostile values, sometimes absent, of
    the wrong type, or belonging to another action."""
    hostile = st.sampled_from(_hostile_paths(outside))
    segment = st.text(min_size=1, max_size=12)  # lone surrogates included: JSON can carry them
    plain = st.sampled_from(["ok/out.txt", "src/gen.py", "tests/test_gen.py", "docs/README.md", "deep/a/b/c/d.txt",
                             "ctx/small.py", "ctx/empty.txt", "ctx/big.txt", "link_inside/small.py"])
    generated = st.lists(st.one_of(segment, st.sampled_from(["..", ".", ""])), min_size=1, max_size=4).map("/".join)
    # A third hostile, half valid (so that delegations run, with the huge context file too), the rest random.
    path = st.sampled_from(range(6)).flatmap(lambda i: hostile if i < 2 else plain if i < 5 else generated)
    junk = st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(),
                     st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=5), st.integers(),
                                                                          max_size=2))
    paths = _mostly(st.lists(path, max_size=3), junk)
    output = _mostly(st.one_of(path, st.fixed_dictionaries({"path": path},
                                                           optional={"description": st.text(max_size=40)})),
                     st.fixed_dictionaries({"path": junk}))
    run_id = _mostly(st.one_of(
        st.integers(0, 1000).map(lambda i: known_runs[i % len(known_runs)] if known_runs else "run-0"),
        st.text(max_size=40), st.sampled_from(["run-0", "../../x", "x\x00", "session"]),
    ), junk)
    fields: dict[str, st.SearchStrategy[Any]] = {
        "task": _mostly(st.one_of(st.text(max_size=200), st.sampled_from(["write it", "x" * 100_000, "\x00", " "])),
                        junk),
        "task_type": _mostly(st.sampled_from(["generate", "test", "docs", "refactor", "translate"]),
                             st.one_of(st.just("evil"), junk)),
        "files": paths,
        "context_files": paths,
        "output_files": _mostly(st.lists(output, min_size=1, max_size=3), st.one_of(st.just([]), junk)),
        "verify": _mostly(st.sampled_from(SAFE_VERIFY), junk),
        "max_attempts": _mostly(st.integers(1, 3), st.one_of(st.integers(-3, 15), st.sampled_from(["3", 2.5]))),
        "model": _mostly(st.sampled_from([None, MODEL]), st.one_of(st.text(max_size=30),
                                                                  st.sampled_from(["../../etc", "x\x00"]))),
        "allow_secrets": _mostly(st.booleans(), junk),
        "wait": _mostly(st.sampled_from([None, 0, 0.01, 2]), st.sampled_from([-1, 1e12, float("inf"), "x"])),
        "llm": _mostly(st.sampled_from([MODEL, f"{MODEL}:persist", "nope:1b", "../x", "x\x00y", ":persist", True]),
                       st.one_of(st.text(max_size=30), junk)),
        "backend": _mostly(st.sampled_from(["ollama", "openai"]), st.one_of(st.just("bogus"), junk)),
        "stop_server": _mostly(st.sampled_from([False, None]), st.sampled_from(["maybe", 2])),
        "run_id": run_id,
        "machine": _mostly(st.sampled_from(["session", "delegation", "batch"]), st.one_of(st.just("bogus"), junk)),
        "format": _mostly(st.sampled_from(["mermaid", "dot"]), st.one_of(st.just("svg"), junk)),
        "limit": _mostly(st.integers(1, 500), st.one_of(st.integers(-5, 1000), junk)),
        "runs": _mostly(st.lists(st.fixed_dictionaries({"task": st.sampled_from(["write it", ""]),
                                                        "output_files": st.lists(output, min_size=1, max_size=2)}),
                                 min_size=1, max_size=3), st.one_of(st.just([]), junk)),
        "template": _mostly(st.fixed_dictionaries({"task": st.just("test {path}"),
                                                   "output": st.sampled_from(["out/t_{stem}.txt", "one.txt"])}),
                            junk),
        "glob": _mostly(st.sampled_from(["*", "ok/*", "nothing/*", "../*"]), junk),
        "max_parallel": _mostly(st.integers(1, 4), st.one_of(st.integers(-2, 0), junk)),
        "max_failures": _mostly(st.integers(1, 3), st.one_of(st.integers(-2, 0), junk)),
        "parallel_verify": _mostly(st.booleans(), junk),
    }
    uses = {
        "capability": [], "status": [], "stats": [], "disable": ["stop_server"], "enable": ["llm", "backend"],
        "analyze": ["task", "task_type", "files", "output_files"],
        "delegate": ["task", "task_type", "context_files", "output_files", "verify", "max_attempts", "model",
                     "allow_secrets", "wait"],
        "result": ["run_id", "wait"], "cancel": ["run_id"], "runs": ["limit"],
        "diagram": ["machine", "run_id", "format"],
        "batch": ["runs", "template", "glob", "max_parallel", "max_failures", "max_attempts", "parallel_verify",
                  "wait"],
    }
    assert set(uses) == set(ACTIONS), "every action of the tool is fuzzed"
    weights = {"delegate": 6, "analyze": 3, "result": 2, "cancel": 2, "enable": 2}

    def for_action(action: Any) -> st.SearchStrategy[dict[str, Any]]:
        own = uses.get(action, []) if isinstance(action, str) else []
        # The action's own fields are mostly present; any field may turn up where it does not belong.
        required = {k: fields[k] for k in own if k in ("task", "output_files", "run_id")}
        optional = {k: v for k, v in fields.items() if k not in required}
        base = st.fixed_dictionaries({"action": st.just(action), **required},
                                     optional={k: optional[k] for k in own if k in optional})
        anything = st.fixed_dictionaries({"action": st.just(action)}, optional=optional)
        return st.sampled_from(range(8)).flatmap(lambda i: anything if i == 7 else base)

    actions = [a for a in ACTIONS for _ in range(weights.get(a, 1))]
    action = _mostly(st.sampled_from(actions), st.one_of(st.sampled_from(["", "bogus"]), junk))
    return action.flatmap(for_action)


def _snapshot(directory: Path) -> dict[str, str]:
    """Every entry under `directory` (symlinks not followed), with a content hash for files."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(directory))
            if path.is_symlink():
                entries[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                entries[rel] = "dir"
    return entries


CRASH_PREFIX = "Error executing tool local_llm:"
"""The SDK puts it before every tool error; what follows must say what was wrong."""
_NAMES = (
    "action", "task", "task_type", "files", "context_files", "output_files", "verify", "max_attempts", "model",
    "allow_secrets", "wait", "llm", "backend", "stop_server", "run_id", "machine", "format", "limit",
    "runs", "template", "glob", "max_parallel", "max_failures", "parallel_verify", "batch",
    "validation error", "session", "enable", "Ollama", "run ",
)
"""A field of the tool, or the session / backend / run an error is about."""


def _error_problem(text: str) -> str | None:
    """None when an error text is structured: it says what was wrong, and is no internal crash."""
    if not text.strip():
        return "an empty error text"
    lowered = text.lower()
    if "internal error" in lowered or "traceback" in lowered:
        return f"an internal error: {text[:200]}"
    detail = text.removeprefix(CRASH_PREFIX).strip()
    if not any(name in detail for name in _NAMES):
        return f"an error that names no field nor what to do: {text[:200]}"
    return None


def _check_call(args: Mapping[str, Any], result: Any) -> list[str]:
    problems = []
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        if problem := _error_problem(text):
            problems.append(problem)
    else:
        payload = result.structured_content
        if not isinstance(payload, Mapping):
            problems.append(f"no structured result: {result.content!r}"[:300])
        elif args.get("action") == "delegate" and "internal error" in str(payload.get("error") or ""):
            problems.append(f"the run ended in an internal error: {payload.get('error')}"[:300])
    return problems


def _outcome(args: Mapping[str, Any], result: Any) -> str:
    """How a call ended, for the notes: how much of the fuzzing reached the engine."""
    if result.is_error:
        text = " ".join(getattr(c, "text", "") for c in result.content)
        return "refused by the schema" if "validation error" in text else "refused by the engine"
    if args.get("action") == "delegate":
        return "delegations run"
    return "answered"


def _describe(args: Mapping[str, Any]) -> str:
    return repr({k: (v[:60] + "..." if isinstance(v, str) and len(v) > 60 else v) for k, v in args.items()})[:300]


async def _fuzz(examples: int, seed_value: int, result: ScenarioResult) -> None:
    with started_double() as double, tempfile.TemporaryDirectory(prefix="rel-r3-") as tmp:
        base = Path(tmp)
        root, outside = base / "project", base / "outside"
        root.mkdir()
        outside.mkdir()
        fixtures = _fixtures(root, outside)
        saved_host = os.environ.get("OLLAMA_HOST")
        os.environ["OLLAMA_HOST"] = double.host  # enable / status / capability probe the double, not a real Ollama
        engine = Engine(Project.resolve(root))
        use_backend(engine, ScriptedBackend(), model=MODEL)
        outside_before, base_before = _snapshot(outside), sorted(os.listdir(base))
        known_runs: list[str] = []
        outcomes: Counter[str] = Counter()
        try:
            async with engine.background(), Client(build_server(engine)) as client:
                async def call(args: dict[str, Any]) -> Any:
                    with anyio.fail_after(CALL_DEADLINE_S):
                        return await client.call_tool("local_llm", args)

                def check(args: dict[str, Any]) -> None:
                    problems: list[str] = []
                    try:
                        answer = anyio.from_thread.run(call, args)
                        problems += _check_call(args, answer)
                        outcomes[_outcome(args, answer)] += 1
                        if isinstance(answer.structured_content, Mapping) and answer.structured_content.get("run_id"):
                            known_runs.append(str(answer.structured_content["run_id"]))
                    except Exception as exc:  # a hang (deadline) or the client's own failure
                        problems.append(f"the call failed: {type(exc).__name__}: {exc}"[:300])
                    if _snapshot(outside) != outside_before or sorted(os.listdir(base)) != base_before:
                        problems.append("something outside the project changed")
                    if leftovers := temp_files(root):
                        problems.append(f"temp files left: {leftovers[:3]}")
                    status = anyio.from_thread.run(call, {"action": "status"})
                    if status.is_error:
                        problems.append(f"status failed afterwards: {status.content!r}"[:300])
                    _restore(root, fixtures)
                    result.record(problems, _describe(args))

                run_examples = counting_runner(check, arguments(outside, known_runs), examples, seed_value,
                                                  explicit_examples(outside))
                await anyio.to_thread.run_sync(run_examples)
            result.notes.insert(0, ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
        finally:
            engine.close()
            if saved_host is None:
                os.environ.pop("OLLAMA_HOST", None)
            else:
                os.environ["OLLAMA_HOST"] = saved_host


def _restore(root: Path, fixtures: Mapping[str, bytes]) -> None:
    """A delegation may overwrite a context fixture (that is allowed): put it back for the next example."""
    for rel, content in fixtures.items():
        path = root / rel
        try:
            unchanged = path.is_file() and not path.is_symlink() and path.stat().st_size == len(content)
        except OSError:
            unchanged = False
        if not unchanged:
            if path.is_dir() and not path.is_symlink():
                continue  # a directory in its place cannot come from a delegation; leave it for the checks
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)
            path.write_bytes(content)


def explicit_examples(outside: Path) -> list[dict[str, Any]]:
    """Every hostile path as a delegation's output and as its context file, whatever the random draw brings."""
    cases: list[dict[str, Any]] = []
    for path in _hostile_paths(outside):
        cases.append({"action": "delegate", "task": "write it", "output_files": [{"path": path}], "wait": 5})
        cases.append({"action": "delegate", "task": "write it", "output_files": ["ok/out.txt"],
                      "context_files": [path], "wait": 5})
    return cases


def run(*, short: bool, seed: int, examples: int | None = None) -> ScenarioResult:
    result = ScenarioResult("R3", "fuzzed tool arguments: hostile paths, huge/binary files")
    started = time.monotonic()
    # The SDK logs every rejected argument set as a warning: thousands of expected lines, kept off stderr.
    logging.getLogger("mcp").setLevel(logging.ERROR)
    anyio.run(_fuzz, examples or (150 if short else 1000), seed, result)
    result.seconds = time.monotonic() - started
    return result
