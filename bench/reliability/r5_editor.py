"""R5's concurrent editor: the person who changes, creates and deletes output files while runs work on them.

Edits are saved the way most editors save (a temp file beside the target, then a rename; a delete is an unlink), each
one under the tracer's lock with its record, so it lands exactly before or after any check or rename of the engine.
Every edit writes bytes no one else writes (a counter and the sub-case's tag), except `restore`, which puts back the
file's bytes from before the runs (a `git checkout`; a file that did not exist is deleted).

Two ways in, with their own seeded generators (the engine's thread and the editor's thread draw independently):

- `roam` (a thread): picks a state (or any file), waits until some run is in it (bounded), edits one of that run's
  outputs (or, aiming at writing in a burst, up to `BURST` of them back to back while it writes), pauses a random
  moment, again;
- `poke` (the tracer's hook, on the engine's thread): at a state's start, before each file of writing and rolling
  back, when verify starts, while the model generates: edits one of the run's outputs with a set probability.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.reliability.r5_trace import Event, Poke, Tracer
from engine.store.journal import content_hash

__all__ = ["AIMS", "POKE_ODDS", "Editor"]

AIMS = ("pending", "delegating", "writing", "verifying", "retrying", "rolling_back", "any file", "writing, in a burst")
BURST = 6
"""Edits back to back, without a pause, while a run writes: the hostile editor, the one that can land in the window."""
POKE_ODDS = {
    "pending": 0.1,
    "delegating": 0.1,  # attempt 1: before the packing (the edit becomes the base); later: a conflict to come
    "generating": 0.1,
    "writing": 0.05,
    "writing: next file": 0.05,
    "verifying": 0.05,
    "verifying: command started": 0.25,
    "retrying": 0.1,
    "rolling_back": 0.1,
    "rolling_back: next file": 0.15,
}
"""Low enough that most runs get through some attempts before an edit ends them in a conflict."""
ROAM_WAIT_S = 0.5
"""How long the thread waits for a run to be in the state it aims at before it aims again."""
ROAM_PAUSE_S = (0.02, 0.3)


class Editor:
    def __init__(self, tracer: Tracer, root: Path, originals: Mapping[str, bytes | None], *, tag: str) -> None:
        self.tracer = tracer
        self.root = root
        self.originals = originals
        self.tag = tag
        self.count = 0
        self.abandoned = 0
        """Edits that could not land: the engine removed the directory between the editor's mkdir and its save."""

    def edit(self, path: str, rng: random.Random, *, label: str, run: str = "", during: str | None = None
             ) -> Event | None:
        """`during`: the state the edit is counted under (default: the state `run` is in now)."""
        target = self.root / path
        with self.tracer.lock:
            self.count += 1
            if during is None:
                during = self.tracer.states.get(run, "") if run else ""
            op = rng.choices(("change", "delete", "restore"), weights=(6, 2, 1))[0] if target.exists() else "create"
            content: bytes | None = f"the person's edit {self.count} of {self.tag} ({op}, {label})\n".encode()
            if op == "delete" or (op == "restore" and self.originals.get(path) is None):
                content = None
            elif op == "restore":
                content = self.originals[path]
            try:
                self._save(target, content)
            except (FileNotFoundError, NotADirectoryError):
                self.abandoned += 1
                return None
            return self.tracer.record("edit", path, hash=content_hash(content), run=run, during=during,
                                      label=f"{op}, {label}")

    def _save(self, target: Path, content: bytes | None) -> None:
        if content is None:
            os.unlink(target)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f".{target.name}.editor-{self.count}.swp"
        try:
            temp.write_bytes(content)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    # -- the thread ------------------------------------------------------------------------------------------------

    def roam(self, rng: random.Random, stop: threading.Event, pool: Sequence[str]) -> None:
        while not stop.is_set():
            aim = rng.choice(AIMS)
            burst = aim.endswith("in a burst")
            run, path = self._target("writing" if burst else aim, rng, stop, pool)
            for n in range(BURST if burst and path else 1 if path else 0):
                if n and self.tracer.states.get(run) != "writing":
                    break
                self.edit(path if n == 0 else rng.choice(self.tracer.outputs[run]), rng,
                          label=f"thread aimed at {aim}", run=run)
            stop.wait(rng.uniform(*ROAM_PAUSE_S))  # a random moment before the next edit

    def _target(self, aim: str, rng: random.Random, stop: threading.Event, pool: Sequence[str]) -> tuple[str, str]:
        if aim == "any file":
            return "", rng.choice(list(pool))
        with self.tracer.changed:
            self.tracer.changed.wait_for(lambda: stop.is_set() or bool(self._in(aim)), timeout=ROAM_WAIT_S)
            runs = self._in(aim)
            if not runs:
                return "", ""
            run = rng.choice(runs)
            return run, rng.choice(self.tracer.outputs[run])

    def _in(self, state: str) -> list[str]:
        return sorted(r for r, s in self.tracer.states.items() if s == state and self.tracer.outputs.get(r))

    # -- the hook --------------------------------------------------------------------------------------------------

    def poker(self, rng: random.Random) -> Poke:
        """The tracer's `poke`: an edit at this point of the run, with the point's probability."""
        def poke(point: str, run: str, path: str) -> None:
            outputs = self.tracer.outputs.get(run)
            if not outputs or rng.random() >= POKE_ODDS.get(point, 0.0):
                return
            # The file about to be written or restored, or another one of the run's (one done already, one to come).
            target = path if path and rng.random() < 0.5 else rng.choice(outputs)
            self.edit(target, rng, label=f"aimed at {point}", run=run)

        return poke
