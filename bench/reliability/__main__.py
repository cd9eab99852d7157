"""`python -m bench.reliability [--short] [--only R1,R3] [--seed N] [--json]`: run the scenarios, print the table.

Only the table (or the JSON) goes to stdout; logs go to stderr. Exit code 1 if any case was lost, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence

from bench.common import SCRIPTED_ANSWER_FORM
from bench.reliability import SCENARIOS, ScenarioResult, run_scenarios

__all__ = ["format_table", "main"]

DEFAULT_SEED = 6


def _ids(text: str) -> list[str]:
    ids = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [i for i in ids if i not in SCENARIOS]
    if unknown or not ids:
        raise argparse.ArgumentTypeError(f"expected some of {','.join(SCENARIOS)}, got {text!r}")
    return ids


def format_table(results: Sequence[ScenarioResult]) -> str:
    header = ("id", "scenario", "tried", "survived", "lost", "seconds", "notes")
    rows = [(r.id, r.scenario, str(r.tried), str(r.survived), str(r.lost), f"{r.seconds:.1f}",
             " | ".join(r.notes) or "-") for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]

    return "\n".join([line(header), line(["-" * w for w in widths] + ["-----"]), *map(line, rows)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("--short", action="store_true", help="a few cases of each (the CI form, under 3 minutes)")
    parser.add_argument("--only", type=_ids, default=list(SCENARIOS), help="comma-separated scenario ids")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)
    os.environ.setdefault("LOCAL_LLM_ANSWER_FORM", SCRIPTED_ANSWER_FORM)  # the double answers whole files

    from engine.logs import configure_logging

    configure_logging(log_file=None, console=False)  # stdout carries only the results
    started = time.monotonic()
    results = run_scenarios(args.only, short=args.short, seed=args.seed)
    elapsed = time.monotonic() - started
    lost = sum(r.lost for r in results)
    context = {"seed": args.seed, "mode": "short" if args.short else "full", "seconds": round(elapsed, 1),
               "python": platform.python_version(),
               "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"}
    if args.json:
        print(json.dumps({**context, "results": [r.as_dict() for r in results], "lost": lost}, indent=2))
    else:
        print(f"reliability ({context['mode']}), seed {args.seed}, {elapsed:.1f}s on {context['machine']}, "
              f"Python {context['python']}")
        print(format_table(results))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
