"""One smoke test for `python -m bench`: it runs and prints a well-formed table. Benchmarks are not timed tests: the
figures themselves are judged in BENCHMARKS.md, not here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COLUMNS = ["id", "figure", "engine", "baseline", "ratio", "target", "result"]


def test_quick_b1_prints_the_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "B1"], cwd=REPO, capture_output=True, text=True,
        timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == COLUMNS
    assert set(lines[1]) <= {"-", "+"}
    row = [c.strip() for c in lines[2].split("|")]
    assert len(row) == len(COLUMNS) and row[0] == "B1"
    assert row[-1] in ("PASS", "FAIL"), done.stdout
    assert float(row[4]) > 0
    assert row[2].endswith("us/move") and row[3].endswith("us/move")
