"""R5's instrument: every check the engine makes of an output file, every rename and unlink it does there, every base
it reads at packing, and every edit of the concurrent editor, in one order.

It is installed by monkeypatching, in the harness only (the product code is unchanged):

- `on_disk` (engine/delegation/writes.py, and the name shared_tree.py imported; steps.py looks through
  shared_tree.look): a `check`, with the hash it saw, flagged `guard` when made inside `replace_if` (the check right
  before the rename);
- `os.replace` / `os.unlink` as engine/delegation/writes.py calls them (its `os` becomes a proxy): a `replace` with
  the hash of the bytes renamed into place, an `unlink`; the engine's own files (`.claude/`) and temp files are
  left out;
- `read_bases` as steps.py calls it: a `base` per output (what the model sees);
- each step of `STEPS`: a `state` (the run's state is also kept in `Tracer.states` for the editor to aim at), and
  `Driver.drive`: the run id for everything its steps do (a context variable), an `end` when it stops;
- the test pause hook: a `pause` when it holds a run (the kill -9 part waits for it).

Checks, renames, unlinks, base reads and edits each happen under one lock, with their record: the order of the
events is the order in which they touched the files, exactly. The lock makes an edit and the engine's read or
rename mutually exclusive, so an edit lands either before a check or after it, never inside one; the documented window
(between the guard check and the rename) stays open.

`python -m bench.reliability.r5_trace TRACE_FILE PROJECT_ROOT CLI_ARGS...` runs the `local-llm` CLI with the
instrument installed, appending one JSON line per event to TRACE_FILE (one write(2) each: a SIGKILL cannot cut one).
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.delegation import driver as driver_module
from engine.delegation import shared_tree, steps, writes
from engine.delegation.driver import Driver
from engine.store.journal import ABSENT, content_hash
from states import RunData

__all__ = ["DURING", "RUN", "Event", "Poke", "Tracer", "installed", "main", "read_trace"]

RUN: contextvars.ContextVar[str] = contextvars.ContextVar("r5_run", default="")
"""The run whose drive is doing the work (set by the traced `Driver.drive`, inherited by its steps' tasks)."""
DURING: contextvars.ContextVar[str] = contextvars.ContextVar("r5_during", default="")
"""The state whose step is running."""
_GUARD: contextvars.ContextVar[bool] = contextvars.ContextVar("r5_guard", default=False)

Poke = Callable[[str, str, str], None]
"""`poke(point, run_id, path)`: called by the engine's thread at known points of a run (a state's step begins, the
next file of writing / rolling_back, verify starts), so the harness can aim an edit there."""


@dataclass(frozen=True)
class Event:
    kind: str
    """`setup` (the harness wrote a file before the runs), `edit` (the concurrent editor), `base`, `check`,
    `replace`, `unlink` (the engine), `state` (a step began; `label` is the state), `end` (a drive stopped),
    `pause` (the test pause hook holds the run; `label` is the state)."""
    path: str = ""
    """Relative to the project root, with `/`."""
    hash: str = ""
    """What the file held (check, base) or holds now (replace, unlink, edit, setup): journal.content_hash."""
    run: str = ""
    during: str = ""
    """The run's state: the step that made a check or a rename; for an edit, the state of the run it aimed at."""
    guard: bool = False
    label: str = ""
    ns: int = 0
    pid: int = 0
    seq: int = 0

    @property
    def order(self) -> tuple[int, int, int]:
        """Across processes (the kill -9 part) by the monotonic clock, which is system-wide on Linux."""
        return (self.ns, self.pid, self.seq)


class Tracer:
    def __init__(self, root: Path, *, sink: Callable[[Event], None] | None = None) -> None:
        self.root = os.path.realpath(root)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        """Notified when a run enters a state (the editor thread waits on it to aim at one)."""
        self.events: list[Event] = []
        self.states: dict[str, str] = {}
        self.outputs: dict[str, list[str]] = {}
        self.poke: Poke | None = None
        self._sink = sink
        self._pid = os.getpid()

    def relative(self, path: str | os.PathLike[str]) -> str | None:
        """The project-relative path of an output, or None for the engine's own files and temp files."""
        rel = os.path.relpath(os.path.realpath(path), self.root)
        name = os.path.basename(rel)
        temp = name.startswith(".") and name.endswith(".tmp")
        if rel.startswith("..") or rel.split(os.sep)[0] == ".claude" or temp:
            return None
        return rel.replace(os.sep, "/")

    def record(self, kind: str, path: str = "", *, ns: int | None = None, **fields: Any) -> Event:
        with self.lock:
            at = time.monotonic_ns() if ns is None else ns
            event = Event(kind, path, **fields, ns=at, pid=self._pid, seq=len(self.events))
            self.events.append(event)
            if self._sink is not None:
                self._sink(event)
            return event

    def enter(self, run_id: str, state: str, outputs: Sequence[str] = ()) -> None:
        with self.changed:
            self.states[run_id] = state
            if outputs:
                self.outputs[run_id] = [p for p in (self.relative(Path(self.root) / o) for o in outputs) if p]
            self.record("end" if state == "ended" else "state", run=run_id, label=state)
            self.changed.notify_all()

    # -- the engine's IO, traced --------------------------------------------------------------------------------

    def check(self, path: Path, real: Callable[[Path], str]) -> str:
        with self.lock:
            seen = real(path)
            if (rel := self.relative(path)) is not None:
                self.record("check", rel, hash=seen, run=RUN.get(), during=DURING.get(), guard=_GUARD.get())
            return seen

    def replace(self, src: Any, dst: Any, real: Callable[..., None], **kwargs: Any) -> None:
        # The time is taken right before the syscall (a check's right after its read): their difference is the window.
        with self.lock:
            started = time.monotonic_ns()
            real(src, dst, **kwargs)
            if (rel := self.relative(dst)) is not None:  # nobody else writes while the lock is held: dst is what moved
                self.record("replace", rel, ns=started, hash=content_hash(Path(dst).read_bytes()), run=RUN.get(),
                            during=DURING.get())

    def unlink(self, path: Any, real: Callable[..., None], **kwargs: Any) -> None:
        with self.lock:
            started = time.monotonic_ns()
            real(path, **kwargs)
            if (rel := self.relative(path)) is not None:
                self.record("unlink", rel, ns=started, hash=ABSENT, run=RUN.get(), during=DURING.get())

    def bases(self, root: Path, paths: Sequence[str], real: Callable[..., dict[str, bytes | None]]) -> Any:
        with self.lock:
            found = real(root, paths)
            for path, previous in found.items():
                if (rel := self.relative(Path(root) / path)) is not None:
                    self.record("base", rel, hash=content_hash(previous), run=RUN.get(), during=DURING.get())
            return found

    def aim(self, point: str, run_id: str, path: str = "") -> None:
        if self.poke is not None:
            self.poke(point, run_id, path)


class _TracedOs(types.ModuleType):
    """engine.delegation.writes' `os`: the real module, with `replace` and `unlink` traced."""

    def __init__(self, tracer: Tracer) -> None:
        super().__init__("os")
        self._tracer = tracer

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any, **kwargs: Any) -> None:
        self._tracer.replace(src, dst, os.replace, **kwargs)

    def unlink(self, path: Any, **kwargs: Any) -> None:
        self._tracer.unlink(path, os.unlink, **kwargs)


def _in_state(tracer: Tracer, state: str, step: Any) -> Any:
    async def traced(tools: Any, record: Any, attempt: Any) -> None:
        tracer.enter(record.id, state, RunData.from_json(record.data).output_paths)
        tracer.aim(state, record.id)
        token = DURING.set(state)
        try:
            await step(tools, record, attempt)
        finally:
            DURING.reset(token)

    return traced


@contextmanager
def installed(tracer: Tracer) -> Iterator[Tracer]:
    """Trace the engine of this process while inside (everything patched is put back on the way out)."""
    with ExitStack() as undo:
        def patch(owner: Any, name: str, value: Any) -> None:
            undo.callback(setattr, owner, name, getattr(owner, name))
            setattr(owner, name, value)

        real_on_disk = writes.on_disk

        def traced_on_disk(path: Path) -> str:
            return tracer.check(path, real_on_disk)

        for module in (writes, shared_tree):
            patch(module, "on_disk", traced_on_disk)
        patch(writes, "os", _TracedOs(tracer))
        _trace_writes(tracer, patch)
        _trace_runs(tracer, patch, undo)
        yield tracer


def _trace_writes(tracer: Tracer, patch: Callable[[Any, str, Any], None]) -> None:
    real_replace_if, real_read_bases = shared_tree.replace_if, steps.read_bases
    real_apply, real_rollback, real_verify = steps.apply_file, steps.rollback_file, steps.run_verify

    def guarded(path: Path, content: bytes | None, *, expected: Callable[[str], bool]) -> Any:
        token = _GUARD.set(True)
        try:
            return real_replace_if(path, content, expected=expected)
        finally:
            _GUARD.reset(token)

    def apply_file(root: Path, workflow: Path, run_id: str, w: Any, **options: Any) -> Any:
        tracer.aim("writing: next file", run_id, w.path)
        return real_apply(root, workflow, run_id, w, **options)

    def rollback_file(root: Path, workflow: Path, run_id: str, w: Any, **options: Any) -> Any:
        tracer.aim("rolling_back: next file", run_id, w.path)
        return real_rollback(root, workflow, run_id, w, **options)

    async def run_verify(command: str, **kwargs: Any) -> Any:
        tracer.aim("verifying: command started", RUN.get())
        return await real_verify(command, **kwargs)

    patch(shared_tree, "replace_if", guarded)
    patch(steps, "read_bases", lambda root, paths: tracer.bases(root, paths, real_read_bases))
    patch(steps, "apply_file", apply_file)
    patch(steps, "rollback_file", rollback_file)
    patch(steps, "run_verify", run_verify)


def _trace_runs(tracer: Tracer, patch: Callable[[Any, str, Any], None], undo: ExitStack) -> None:
    for state, step in list(steps.STEPS.items()):
        undo.callback(steps.STEPS.__setitem__, state, step)
        steps.STEPS[state] = _in_state(tracer, state, step)
    real_drive, real_pause = Driver.drive, steps.test_pause

    async def drive(self: Driver, run_id: str, progress: Any, live: Any) -> None:
        token = RUN.set(run_id)
        try:
            await real_drive(self, run_id, progress, live)
        finally:
            tracer.enter(run_id, "ended")
            RUN.reset(token)

    async def test_pause(state: str) -> None:
        if os.environ.get(steps.PAUSE_ENV) == state and os.environ.get(steps.PAUSE_FILE_ENV):
            tracer.record("pause", run=RUN.get(), label=state)
        await real_pause(state)

    patch(Driver, "drive", drive)
    patch(steps, "test_pause", test_pause)
    patch(driver_module, "test_pause", test_pause)


def read_trace(path: Path) -> list[Event]:
    if not path.exists():
        return []
    return [Event(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def main(argv: Sequence[str]) -> int:
    trace_file, root, *cli_args = argv
    fd = os.open(trace_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def sink(event: Event) -> None:
        os.write(fd, (json.dumps(asdict(event)) + "\n").encode())

    from mcp_adapter.entry import main as cli_main

    with installed(Tracer(Path(root), sink=sink)):
        return int(cli_main(cli_args) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
