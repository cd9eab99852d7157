"""R6: protected paths and path aliases under fuzzing (issue #10, point 3), through the real MCP server.

The project is built as the issue found it: `.claude` is a symlink (to `dotclaude/`, so the engine's journal really is
`dotclaude/workflow/state.db`), `.git` is a real git directory with hooks, a second repository sits at depth
(`vendor/lib/.git`) and a third under another name (`gitdata/`), every configuration file of docs/safety.md's list
exists, and symlinks lead into all of them (`g` -> `.git`, `gh` -> `.git/hooks`, `cl` -> `.claude`, `wf` ->
`.claude/workflow`, `gw` -> `.github/workflows`, `mcp` -> `.mcp.json`, `vg` -> `vendor/lib/.git`).

Hypothesis picks a protected file and spells it every way that reaches it: through a symlink, with `./`, `//`,
backslashes, the case of its protected names changed, `.git` as `.git.`, `.g\\u200cit` or `git~1`, with or without
`allow_config_writes`. Checks per case:

- the engine state, `.git/` and git directories are refused, opt-in or not; configuration is refused without the
  opt-in and written with it; a refusal names the rule (`... is protected by the rule `.git/** ...``);
- a refused call reached no model (the scripted backend got no request) and created no run;
- no file of the project changed (0 protected writes), apart from the configuration file an opted-in run wrote,
  which is checked to be the real target and then put back.

The alias half: two spellings of one ordinary file (`./`, `//`, `\\`, a symlinked directory, a symlinked file) must
have the same identity key (engine.delegation.paths.output_identity, the key output locks are taken on), and a
delegation naming both is refused as the same file twice. Two *runs* on aliased spellings never writing one file at
once rests on the output locks being keyed on that identity (issue #10, point 1, not part of this scenario).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from hypothesis import strategies as st
from mcp import Client

from bench.reliability.common import MODEL, ScenarioResult
from bench.reliability.fuzzing import counting_runner
from engine import Engine, Project
from engine.delegation.paths import output_identity
from engine.testing.scripted import ScriptedBackend, use_backend
from mcp_adapter.server import build_server

__all__ = ["TARGETS", "Target", "run"]

CALL_DEADLINE_S = 30.0
PLANTED = "planted.txt"
"""The harness's own file in the engine's state directory; the rest of that directory is the engine's to change."""


@dataclass(frozen=True)
class Target:
    parts: tuple[str, ...]
    """The file's spelling through the protected names (`.claude`, not the directory it links to)."""
    rule: str
    """The start of the rule pattern a refusal must name."""
    opt_in: bool
    aliases: tuple[tuple[int, str], ...] = ()
    """(how many leading parts, the symlink that stands for them)."""


_GIT, _STATE = ".git/**", ".claude/workflow/**"
TARGETS = (
    Target((".git", "config"), _GIT, False, ((1, "g"),)),
    Target((".git", "hooks", "pre-commit"), _GIT, False, ((1, "g"), (2, "gh"))),
    Target((".git", "HEAD"), _GIT, False, ((1, "g"),)),
    Target((".git",), _GIT, False),
    Target(("vendor", "lib", ".git", "config"), _GIT, False, ((3, "vg"),)),
    Target(("vendor", "lib", ".git", "hooks", "post-checkout"), _GIT, False, ((3, "vg"),)),
    Target(("gitdata", "hooks", "pre-push"), _GIT, False),
    Target((".claude", "workflow", "state.db"), _STATE, False, ((1, "dotclaude"), (1, "cl"), (2, "wf"))),
    Target((".claude", "workflow", "delegation-log.jsonl"), _STATE, False, ((1, "dotclaude"), (2, "wf"))),
    Target((".claude", "workflow", PLANTED), _STATE, False, ((1, "dotclaude"), (1, "cl"), (2, "wf"))),
    Target(("sub", ".claude", "workflow", "state.db"), _STATE, False),
    Target((".claude", "settings.json"), ".claude/settings.json", True, ((1, "dotclaude"), (1, "cl"))),
    Target((".claude", "settings.local.json"), ".claude/settings.local.json", True, ((1, "dotclaude"),)),
    Target((".claude", "commands", "implement.md"), ".claude/commands/**", True, ((1, "dotclaude"), (1, "cl"))),
    Target((".claude", "skills", "s", "SKILL.md"), ".claude/skills/**", True, ((1, "dotclaude"),)),
    Target((".claude", "agents", "a.md"), ".claude/agents/**", True, ((1, "cl"),)),
    Target((".claude", "hooks", "pre.sh"), ".claude/hooks/**", True, ((1, "dotclaude"),)),
    Target((".mcp.json",), ".mcp.json", True, ((1, "mcp"),)),
    Target((".gitattributes",), ".gitattributes", True),
    Target((".gitmodules",), ".gitmodules", True),
    Target((".envrc",), ".envrc", True),
    Target(("pkg", ".envrc"), ".envrc", True),
    Target((".pre-commit-config.yaml",), ".pre-commit-config.yaml", True),
    Target((".github", "workflows", "ci.yml"), ".github/workflows/**", True, ((2, "gw"),)),
)
_PROTECTED_NAMES = {".git", ".claude", "workflow", "settings.json", "settings.local.json", "commands", "skills",
                    "agents", "hooks", ".mcp.json", ".gitattributes", ".gitmodules", ".envrc",
                    ".pre-commit-config.yaml", ".github", "workflows"}
"""Names the rules match without regard to case; the other names (symlinks, plain directories) keep theirs, since
on this case-sensitive file system `G/config` is a new file, not `.git/config`."""
_GIT_SPELLINGS = (".git", ".GIT", ".Git", ".git.", ".git ", ".g\u200cit", "git~1")
_SEPARATORS = ("/", "//", "\\", "/./", "\\\\")


def _build(root: Path) -> None:
    """The project of the module's docstring (before the engine opens it: `.claude` is a symlink from the start)."""
    files = {
        ".git/HEAD": "ref: refs/heads/main\n", ".git/config": "[core]\n", ".git/hooks/pre-commit": "#!/bin/sh\n",
        "vendor/lib/.git/HEAD": "ref: refs/heads/main\n", "vendor/lib/.git/config": "[core]\n",
        "gitdata/HEAD": "ref: refs/heads/main\n", "gitdata/config": "[core]\n",
        "dotclaude/settings.json": "{}\n", "dotclaude/commands/implement.md": "# implement\n",
        "dotclaude/hooks/pre.sh": "#!/bin/sh\n", f"dotclaude/workflow/{PLANTED}": "planted\n",
        "sub/.claude/workflow/state.db": "another project's journal\n",
        ".mcp.json": "{}\n", ".gitattributes": "* text=auto\n", ".gitmodules": "", ".envrc": "", "pkg/.envrc": "",
        ".pre-commit-config.yaml": "repos: []\n", ".github/workflows/ci.yml": "on: push\n",
        "src/mod.py": "X = 1\n", "docs/guide.md": "# guide\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for git_dir in (".git", "vendor/lib/.git", "gitdata"):
        for sub in ("objects", "refs"):
            (root / git_dir / sub).mkdir(exist_ok=True)
    links = {".claude": "dotclaude", "cl": ".claude", "wf": ".claude/workflow", "g": ".git", "gh": ".git/hooks",
             "gw": ".github/workflows", "mcp": ".mcp.json", "vg": "vendor/lib/.git", "srclink": "src",
             "modlink.py": "src/mod.py"}
    for name, target in links.items():
        os.symlink(target, root / name)


def _snapshot(root: Path) -> dict[str, str]:
    """Every entry of the project (symlinks not followed) with a content hash, the engine's own files left out."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("dotclaude/workflow"):
            dirnames[:] = []
            filenames = [f for f in filenames if f == PLANTED]
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                entries[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                entries[rel] = "dir"
    return entries


@st.composite
def protected_case(draw: st.DrawFn) -> dict[str, Any]:
    target = draw(st.sampled_from(TARGETS))
    parts = list(target.parts)
    alias = draw(st.sampled_from([None, *target.aliases]))
    if alias is not None:
        parts = [alias[1], *parts[alias[0]:]]
    for i, part in enumerate(parts):
        if part == ".git":
            parts[i] = draw(st.sampled_from(_GIT_SPELLINGS))
        elif part in _PROTECTED_NAMES and draw(st.booleans()):
            flips = draw(st.lists(st.booleans(), min_size=len(part), max_size=len(part)))
            parts[i] = "".join(c.swapcase() if flip else c for c, flip in zip(part, flips, strict=True))
    spelling = draw(st.sampled_from(["", "./", ".//"]))
    for i, part in enumerate(parts):
        spelling += part if i == 0 else draw(st.sampled_from(_SEPARATORS)) + part
    return {"target": target, "path": spelling, "allow": draw(st.booleans())}


@st.composite
def alias_pair(draw: st.DrawFn) -> tuple[str, str]:
    """Two spellings of one ordinary file (existing or new), through `./`, `//`, `\\`, and symlinks."""
    forms = draw(st.sampled_from([
        (("src", "mod.py"), ("srclink", "mod.py"), ("modlink.py",)),
        (("src", "new.py"), ("srclink", "new.py")),
        (("docs", "guide.md"),),
    ]))

    def spell(parts: tuple[str, ...]) -> str:
        text = draw(st.sampled_from(["", "./"]))
        for i, part in enumerate(parts):
            text += part if i == 0 else draw(st.sampled_from(_SEPARATORS)) + part
        return text

    return spell(draw(st.sampled_from(forms))), spell(draw(st.sampled_from(forms)))


def _explicit_cases() -> list[dict[str, Any]]:
    """Every target once as spelled, once through each of its symlinks, with `.git` in each of its spellings, with
    its protected names upper-cased, and with backslashes, whatever the random draw brings."""
    cases = [{"target": t, "path": "/".join(t.parts), "allow": allow} for t in TARGETS for allow in (False, True)]
    for t in TARGETS:
        cases += [{"target": t, "path": "/".join([name, *t.parts[count:]]), "allow": True} for count, name in t.aliases]
        cases += [{"target": t, "path": "/".join(git if p == ".git" else p for p in t.parts), "allow": True}
                  for git in _GIT_SPELLINGS[1:] if ".git" in t.parts]
        upper = "/".join(p.upper() if p in _PROTECTED_NAMES else p for p in t.parts)
        cases += [{"target": t, "path": upper, "allow": False}, {"target": t, "path": upper.replace("/", "\\"),
                                                                 "allow": False}]
    return cases


def _error_text(answer: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in answer.content)


def _check_protected(call: Callable[[dict[str, Any]], Any], root: Path, engine: Engine, backend: ScriptedBackend,
                     case: dict[str, Any], outcomes: Counter[str]) -> list[str]:
    target: Target = case["target"]
    expect_refusal = not (target.opt_in and case["allow"])
    requests_before, runs_before = len(backend.requests), len(engine.list_runs(limit=10_000))
    answer = call({"action": "delegate", "task": "write it", "output_files": [case["path"]], "wait": 10,
                   "allow_config_writes": case["allow"]})
    problems = []
    if expect_refusal:
        text = _error_text(answer)
        outcomes["refused"] += 1
        if not answer.is_error:
            problems.append(f"not refused: {str(answer.structured_content)[:200]}")
        elif f"is protected by the rule `{target.rule}" not in text:
            problems.append(f"refused without naming the rule {target.rule}: {text[:200]}")
        if len(backend.requests) != requests_before:
            problems.append("the model was asked before the refusal")
        if len(engine.list_runs(limit=10_000)) != runs_before:
            problems.append("a run was created")
    else:
        outcomes["written with the opt-in"] += 1
        payload = answer.structured_content or {}
        if answer.is_error or payload.get("state") != "done":
            problems.append(f"opted-in configuration not written: {_error_text(answer)[:200] or payload}")
    return problems


def _written_by(root: Path, spelling: str, initial: dict[str, str]) -> set[str]:
    """The entries an opted-in run writing `spelling` may add or change: its real file and new parent directories."""
    real_root = Path(os.path.realpath(root))
    relative = output_identity(root, spelling).real.relative_to(real_root)
    parents = {str(p) for p in relative.parents if str(p) != "." and str(p) not in initial}
    return {str(relative), *parents}


def _put_back(root: Path, initial: dict[str, str], contents: dict[str, bytes]) -> None:
    """Undo what an opted-in run wrote (its configuration file, and directories it made), nothing else: any other
    change stays for the check to see."""
    now = _snapshot(root)
    for rel in sorted(set(now) - set(initial), key=len, reverse=True):
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            os.rmdir(path)
        else:
            path.unlink()
    for rel, digest in initial.items():
        if now.get(rel) not in (None, digest) and rel in contents:
            (root / rel).write_bytes(contents[rel])


async def _fuzz(examples: int, seed_value: int, result: ScenarioResult) -> None:
    with tempfile.TemporaryDirectory(prefix="rel-r6-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        _build(root)
        engine = Engine(Project.resolve(root))
        backend = ScriptedBackend()
        use_backend(engine, backend, model=MODEL)
        initial = _snapshot(root)
        contents = {rel: (root / rel).read_bytes() for rel, digest in initial.items()
                    if not digest.startswith(("link:", "dir")) and not (root / rel).is_symlink()}
        outcomes: Counter[str] = Counter({"protected writes": 0})  # shown in the notes even when none
        try:
            async with engine.background(), Client(build_server(engine)) as client:
                async def call_async(args: dict[str, Any]) -> Any:
                    with anyio.fail_after(CALL_DEADLINE_S):
                        return await client.call_tool("local_llm", args)

                def call(args: dict[str, Any]) -> Any:
                    return anyio.from_thread.run(call_async, args)

                def check_protected(case: dict[str, Any]) -> None:
                    opted_in = case["target"].opt_in and case["allow"]
                    # The one change an opted-in run may make: its configuration file (and directories made for it).
                    allowed = _written_by(root, case["path"], initial) if opted_in else set()
                    try:
                        problems = _check_protected(call, root, engine, backend, case, outcomes)
                    except Exception as exc:  # a hang (deadline) or the client's own failure
                        problems = [f"the call failed: {type(exc).__name__}: {exc}"[:300]]
                    changed = {rel for rel, _ in set(_snapshot(root).items()) ^ set(initial.items())}
                    if unexpected := sorted(changed - allowed):
                        problems.append(f"protected files changed: {unexpected[:3]}")
                        outcomes["protected writes"] += 1
                    if changed:
                        _put_back(root, initial, contents)
                    result.record(problems, f"{case['path']!r} (allow_config_writes={case['allow']})")

                def check_alias(pair: tuple[str, str]) -> None:
                    problems = []
                    try:
                        keys = {output_identity(root, spelling).key for spelling in pair}
                        if len(keys) != 1:
                            problems.append(f"two identities for one file: {sorted(keys)}")
                        answer = call({"action": "delegate", "task": "x", "output_files": list(pair), "wait": 10})
                        if not answer.is_error or "is the same file" not in _error_text(answer):
                            problems.append(f"both spellings accepted as outputs: {_error_text(answer)[:200]}")
                        outcomes["aliases with one identity"] += 1
                        problems += anyio.from_thread.run(_two_writers, engine, pair)
                        outcomes["aliased run pairs, never two writers"] += 0 if problems else 1
                        _put_back(root, initial, contents)
                        use_backend(engine, backend, model=MODEL)
                    except Exception as exc:  # recorded as the case's problem
                        problems.append(f"the check failed: {type(exc).__name__}: {exc}"[:300])
                    result.record(problems, f"aliases {pair!r}")

                explicit = _explicit_cases()
                protected = counting_runner(check_protected, protected_case(), examples, seed_value, explicit)
                aliases = counting_runner(check_alias, alias_pair(), max(20, examples // 5), seed_value,
                                          [("src/mod.py", "modlink.py")])
                await anyio.to_thread.run_sync(protected)
                await anyio.to_thread.run_sync(aliases)
            result.notes.insert(0, ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
        finally:
            engine.close()


async def _two_writers(engine: Engine, pair: tuple[str, str]) -> list[str]:
    """Two runs at once, one on each spelling, on a backend with room for both: the second must wait for the first
    (one lock per file identity), so at most one of them is ever past `pending`, and both end `done`."""
    backend = ScriptedBackend(parallelism=4)
    backend.block = anyio.Event()
    use_backend(engine, backend, model=MODEL)
    problems: list[str] = []
    with anyio.fail_after(CALL_DEADLINE_S):
        runs = [await engine.delegate(task=f"write {p}", output_files=[p], wait=0) for p in pair]
        await backend.wait_active(1)
        working = [r["run_id"] for r in runs if engine.store.get(r["run_id"]).state != "pending"]
        backend.block.set()
        ends = [(await engine.result(r["run_id"], wait=CALL_DEADLINE_S))["state"] for r in runs]
    if len(working) > 1 or backend.max_active > 1:
        problems.append(f"two writers on one file: {len(working)} runs past pending, {backend.max_active} generating")
    if ends != ["done", "done"]:
        problems.append(f"the aliased runs ended {ends}")
    return problems


def run(*, short: bool, seed: int, examples: int | None = None) -> ScenarioResult:
    result = ScenarioResult("R6", "protected paths and path aliases, fuzzed")
    started = time.monotonic()
    anyio.run(_fuzz, examples or (100 if short else 1000), seed, result)
    result.seconds = time.monotonic() - started
    return result
