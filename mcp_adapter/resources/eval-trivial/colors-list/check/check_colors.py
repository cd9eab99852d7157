"""Hidden check of the trivial task colors-list: the behaviour the task asks for, on cases of its own."""
import sys

import colors
value = getattr(colors, 'COLORS', None)
failed = [] if list(value or ()) == ['red', 'green', 'blue'] else [f'COLORS is {value!r}']
if failed:
    sys.exit('\n'.join(failed))
print('colors-list: the hidden check passed')
