"""greet.py NAME [TIMES]: number and print a greeting TIMES times (default 1)."""

import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) > 3:
        print("usage: greet NAME [TIMES]", file=sys.stderr)
        return 2
    name = argv[1]
    times = int(argv[2]) if len(argv) == 3 else 1
    if times < 0:
        print("greet: TIMES cannot be negative", file=sys.stderr)
        return 1
    for i in range(times):
        print(f"{i + 1}: Hello, {name}!")
    if times == 0:
        print("(nobody greeted)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
