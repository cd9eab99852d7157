"""Hidden check of gen-sh-line-count: counts, a name with spaces, an empty file, the total, the usage error."""
import subprocess
import sys
import tempfile
from pathlib import Path

script = Path("count_lines.sh").resolve()
problems = []
with tempfile.TemporaryDirectory() as tmp:
    files = {"a.txt": "1\n2\n3\n4\n5\n", "with space.txt": "x\ny\n", "empty.txt": ""}
    for name, text in files.items():
        Path(tmp, name).write_text(text)
    run = subprocess.run(["sh", str(script), *files], cwd=tmp, capture_output=True, text=True, timeout=20, check=False)
    lines = [line.strip().split(maxsplit=1) for line in run.stdout.strip().splitlines()]
    expected = [["5", "a.txt"], ["2", "with space.txt"], ["0", "empty.txt"], ["total", "7"]]
    if run.returncode != 0 or lines != expected:
        problems.append(f"exit {run.returncode}, printed {run.stdout!r}; expected {expected}")
    bare = subprocess.run(["sh", str(script)], cwd=tmp, capture_output=True, text=True, timeout=20, check=False)
    if bare.returncode != 2 or "usage: count_lines.sh FILE..." not in bare.stderr or bare.stdout.strip():
        problems.append(f"without arguments: exit {bare.returncode}, stdout {bare.stdout!r}, stderr {bare.stderr!r}")
if problems:
    sys.exit("\n".join(problems))
print("count_lines.sh: counts, total and usage as asked")
