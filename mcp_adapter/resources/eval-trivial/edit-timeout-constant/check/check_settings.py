"""Hidden check of the trivial task edit-timeout-constant: the behaviour the task asks for, on cases of its own."""
import sys

import settings
failed = []
if getattr(settings, 'TIMEOUT', None) != 30:
    failed.append(f'TIMEOUT is {getattr(settings, "TIMEOUT", None)!r}, expected 30')
if getattr(settings, 'HOST', None) != 'localhost':
    failed.append('HOST changed or is missing: it had to stay as it was')
if failed:
    sys.exit('\n'.join(failed))
print('edit-timeout-constant: the hidden check passed')
