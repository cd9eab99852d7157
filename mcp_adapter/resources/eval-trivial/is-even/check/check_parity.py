"""Hidden check of the trivial task is-even: the behaviour the task asks for, on cases of its own."""
import sys

from parity import is_even
CASES = {0: True, 1: False, 2: True, 7: False, -6: True, -3: False}
failed = [f'is_even({n}) returned {is_even(n)!r}, expected {w}' for n, w in CASES.items() if is_even(n) is not w]
if failed:
    sys.exit('\n'.join(failed))
print('is-even: the hidden check passed')
