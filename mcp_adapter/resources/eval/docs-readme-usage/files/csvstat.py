"""csvstat: count, mean, minimum and maximum of every numeric column of a CSV file."""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="csvstat", description=__doc__)
    parser.add_argument("path", help="the CSV file to read ('-' for stdin)")
    parser.add_argument("--delimiter", "-d", default=",", help="the field separator (default: ',')")
    parser.add_argument("--columns", "-c", help="comma-separated names of the columns to report (default: all)")
    parser.add_argument("--format", choices=["table", "json"], default="table", help="how to print the result")
    parser.add_argument("--skip-blank", action="store_true", help="ignore empty cells instead of failing")
    return parser.parse_args(argv)


def column_stats(rows: list[dict[str, str]], name: str, *, skip_blank: bool) -> dict[str, float]:
    values = [float(row[name]) for row in rows if row[name].strip() or not skip_blank]
    return {"count": len(values), "mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    source = sys.stdin if args.path == "-" else open(args.path, newline="")  # noqa: SIM115
    with source:
        rows = list(csv.DictReader(source, delimiter=args.delimiter))
    names = args.columns.split(",") if args.columns else list(rows[0]) if rows else []
    stats = {name: column_stats(rows, name, skip_blank=args.skip_blank) for name in names}
    if args.format == "json":
        print(json.dumps(stats, indent=2))
    else:
        for name, s in stats.items():
            print(f"{name}: n={s['count']} mean={s['mean']:.3g} min={s['min']:g} max={s['max']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
