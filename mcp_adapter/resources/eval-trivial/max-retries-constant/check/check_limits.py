"""Hidden check of the trivial task max-retries-constant: the behaviour the task asks for, on cases of its own."""
import sys

import limits
value = getattr(limits, 'MAX_RETRIES', None)
failed = [] if type(value) is int and value == 3 else [f'MAX_RETRIES is {value!r}, expected the int 3']
if failed:
    sys.exit('\n'.join(failed))
print('max-retries-constant: the hidden check passed')
