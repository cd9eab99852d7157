"""Hidden check of the trivial task square-number: the behaviour the task asks for, on cases of its own."""
import sys

from square import square
CASES = {0: 0, 3: 9, -4: 16, 1.5: 2.25}
failed = [f'square({x!r}) returned {square(x)!r}, expected {w!r}' for x, w in CASES.items() if square(x) != w]
if failed:
    sys.exit('\n'.join(failed))
print('square-number: the hidden check passed')
