"""Hidden check of translate-py-to-sh: greet.sh and greet.py give the same stdout, stderr and exit status."""
import subprocess
import sys

ARGUMENTS = [["Ada"], ["Ada Lovelace", "3"], ["Bob", "0"], ["Eve", "-2"], [], ["a", "1", "extra"], ["*", "2"]]
problems = []
for args in ARGUMENTS:
    want = subprocess.run([sys.executable, "greet.py", *args], capture_output=True, text=True, timeout=20, check=False)
    got = subprocess.run(["sh", "greet.sh", *args], capture_output=True, text=True, timeout=20, check=False)
    if (got.returncode, got.stdout, got.stderr.strip()) != (want.returncode, want.stdout, want.stderr.strip()):
        problems.append(f"greet.sh {args}: exit {got.returncode}, stdout {got.stdout!r}, stderr {got.stderr!r}; "
                        f"greet.py: exit {want.returncode}, stdout {want.stdout!r}, stderr {want.stderr!r}")
if problems:
    sys.exit("\n".join(problems))
print(f"greet.sh behaves as greet.py on {len(ARGUMENTS)} argument lists")
