"""Hidden check of a `test` task: check_tests.py TESTS MODULE. The tests must pass on MODULE as it is and fail on
every mutant in mutants/ (each breaks one behaviour the task asked the tests to cover)."""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

tests, module = Path(sys.argv[1]), Path(sys.argv[2])
mutants = sorted((Path(__file__).parent / "mutants").glob("*.py"))


def run(implementation: Path) -> tuple[bool, int, str]:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(tests, Path(tmp, tests.name))
        shutil.copy(implementation, Path(tmp, module.name))
        done = subprocess.run([sys.executable, "-B", "-m", "unittest", "-v", tests.stem], cwd=tmp,
                              capture_output=True, text=True, timeout=60, check=False)
    ran = re.search(r"^Ran (\d+) tests?", done.stderr, re.MULTILINE)
    return done.returncode == 0, int(ran.group(1)) if ran else 0, done.stderr[-1500:]


passed, count, output = run(module)
if not passed or count == 0:
    sys.exit(f"the tests do not pass on {module.name} as it is ({count} ran):\n{output}")
survivors = [m.stem for m in mutants if run(m)[0]]
if survivors:
    sys.exit(f"{len(survivors)} of {len(mutants)} mutants of {module.name} pass the tests: {', '.join(survivors)}")
print(f"{count} tests pass on {module.name} and catch all {len(mutants)} mutants")
