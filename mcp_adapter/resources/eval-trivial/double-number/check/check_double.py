"""Hidden check of the trivial task double-number: the behaviour the task asks for, on cases of its own."""
import sys

from double import double
CASES = {0: 0, 4: 8, -7: -14, 0.25: 0.5}
failed = [f'double({x!r}) returned {double(x)!r}, expected {w!r}' for x, w in CASES.items() if double(x) != w]
if failed:
    sys.exit('\n'.join(failed))
print('double-number: the hidden check passed')
