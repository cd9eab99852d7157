"""Hidden check of the trivial task app-name-constant: the behaviour the task asks for, on cases of its own."""
import sys

import appinfo
value = getattr(appinfo, 'APP_NAME', None)
failed = [] if value == 'shop' else [f'APP_NAME is {value!r}, expected the text shop']
if failed:
    sys.exit('\n'.join(failed))
print('app-name-constant: the hidden check passed')
