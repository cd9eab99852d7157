"""Hidden check of the trivial task add-numbers: the behaviour the task asks for, on cases of its own."""
import sys

from add import add
CASES = [((2, 3), 5), ((-4, 4), 0), ((0.5, 0.25), 0.75), ((10, -3), 7)]
failed = [f'add{args} returned {add(*args)!r}, expected {want!r}' for args, want in CASES if add(*args) != want]
if failed:
    sys.exit('\n'.join(failed))
print('add-numbers: the hidden check passed')
