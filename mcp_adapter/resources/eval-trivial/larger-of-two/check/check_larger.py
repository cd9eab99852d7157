"""Hidden check of the trivial task larger-of-two: the behaviour the task asks for, on cases of its own."""
import sys

from larger import larger
CASES = [((1, 2), 2), ((9, 4), 9), ((-3, -8), -3), ((5, 5), 5)]
failed = [f'larger{a} returned {larger(*a)!r}, expected {w!r}' for a, w in CASES if larger(*a) != w]
if failed:
    sys.exit('\n'.join(failed))
print('larger-of-two: the hidden check passed')
