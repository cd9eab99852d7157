"""Hidden check of the trivial task subtract-numbers: the behaviour the task asks for, on cases of its own."""
import sys

from subtract import subtract
CASES = [((5, 3), 2), ((3, 5), -2), ((0, 0), 0), ((2.5, 0.5), 2.0)]
failed = [f'subtract{a} returned {subtract(*a)!r}, expected {w!r}' for a, w in CASES if subtract(*a) != w]
if failed:
    sys.exit('\n'.join(failed))
print('subtract-numbers: the hidden check passed')
