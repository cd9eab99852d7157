"""`python -m bench [--quick] [--only B1,B3] [--json]`: run the benchmarks and print one table.

Every figure is a ratio against a baseline measured in the same run (see BENCHMARKS.md). The command reports; it does
not judge: it exits 0 whatever the figures say (a benchmark that crashes is a row marked ERROR, the others still run).
Only the table (or the JSON) goes to stdout; logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

from bench.common import SCRIPTED_ANSWER_FORM, Figure

__all__ = ["BENCHMARKS", "format_table", "main", "notes", "rows"]

BENCHMARKS: dict[str, str] = {
    "B1": "bench.b1_transitions",
    "B2": "bench.b2_roundtrip",
    "B3": "bench.b3_delegation",
    "B4": "bench.b4_startup",
    "B5": "bench.b5_prompt_reuse",
    "B6": "bench.b6_footprint",
    "B7": "bench.b7_edit_tokens",
    "B8": "bench.b8_result_size",
    "B9": "bench.b9_batch",
    "B10": "bench.b10_long_calls",
    "B11": "bench.b11_retention",
    "B12": "bench.b12_gateway",
}
COLUMNS = ("id", "figure", "engine", "baseline", "ratio", "target", "result")


def _selected(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    wanted = [part.strip().upper() for part in only.split(",") if part.strip()]
    unknown = [w for w in wanted if w not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"--only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return wanted


def _value(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if abs(value) >= 10 else f"{value:,.3g} {unit}"


def rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    return [
        (f.id, f.figure, _value(f.engine, f.unit), _value(f.baseline, f.unit), f"{f.ratio:.2f}",
         f.target_text or f"<= {f.target:g} x", "PASS" if f.passed else "FAIL")
        for f in figures
    ]


def format_table(table: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in [COLUMNS, *table]) for i in range(len(COLUMNS))]
    line = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(COLUMNS), "-+-".join("-" * w for w in widths), *(line(r) for r in table)])


def notes(figures: Sequence[Figure]) -> list[str]:
    """The rows' notes, as footnotes under the table (numbered by row, in table order)."""
    return [f"  [{f.id}, row {i}] {f.note}" for i, f in enumerate(figures, start=1) if f.note]


def _run_one(bench_id: str, quick: bool) -> tuple[list[Figure], list[tuple[str, ...]], dict[str, Any]]:
    started = time.perf_counter()
    try:
        run: Callable[[bool], list[Figure]] = import_module(BENCHMARKS[bench_id]).run
        figures = run(quick)
    except Exception as exc:  # one broken benchmark must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        message = f"{type(exc).__name__}: {exc}"[:200]
        return [], [(bench_id, message, "-", "-", "-", "-", "ERROR")], {"id": bench_id, "error": message}
    return figures, rows(figures), {"id": bench_id, "seconds": round(time.perf_counter() - started, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (under a minute), for smoke runs")
    parser.add_argument("--only", metavar="B1,B3", help="run only these benchmarks")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args(argv)
    selected = _selected(args.only)
    os.environ.setdefault("LOCAL_LLM_ANSWER_FORM", SCRIPTED_ANSWER_FORM)

    from engine.logs import configure_logging

    configure_logging(log_file=None)  # warnings to stderr; nothing to stdout but the table
    figures: list[Figure] = []
    table: list[tuple[str, ...]] = []
    runs: list[dict[str, Any]] = []
    for bench_id in selected:
        f, t, info = _run_one(bench_id, args.quick)
        figures += f
        table += t
        runs.append(info)
        print(f"{bench_id} done: {info}", file=sys.stderr, flush=True)
    machine = f"{platform.node()} {platform.machine()}, {platform.python_implementation()} {platform.python_version()}"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if args.json:
        json.dump({"when": when, "machine": machine, "quick": args.quick, "runs": runs,
                   "figures": [f.as_dict() for f in figures]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_table(table))
        if extra := notes(figures):
            print("\nnotes:\n" + "\n".join(extra))
        print(f"\n{when}; {machine}; {'--quick' if args.quick else 'full run'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
