"""Hidden check of the trivial task greet-name: the behaviour the task asks for, on cases of its own."""
import sys

from greet import greet
CASES = {'Ada': 'Hello, Ada!', 'World': 'Hello, World!', 'x y': 'Hello, x y!'}
failed = [f'greet({n!r}) returned {greet(n)!r}, expected {w!r}' for n, w in CASES.items() if greet(n) != w]
if failed:
    sys.exit('\n'.join(failed))
print('greet-name: the hidden check passed')
