"""Hidden check of the trivial task edit-return-value: the behaviour the task asks for, on cases of its own."""
import sys

import version
result = version.version()
failed = [] if result == '2.0' else [f'version() returned {result!r}, expected 2.0']
if failed:
    sys.exit('\n'.join(failed))
print('edit-return-value: the hidden check passed')
