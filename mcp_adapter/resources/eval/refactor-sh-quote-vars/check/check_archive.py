"""Hidden check of refactor-sh-quote-vars: archive.sh with spaces in SRC, DEST and the file names; its message, the
files copied (and only .log files), the usage error."""
import subprocess
import sys
import tempfile
from pathlib import Path

script = Path("archive.sh").resolve()
problems = []
with tempfile.TemporaryDirectory() as tmp:
    src, dest = Path(tmp, "my logs"), Path(tmp, "back up")
    src.mkdir()
    for name in ("app one.log", "db.log", "notes.txt"):
        (src / name).write_text(name)
    run = subprocess.run(["sh", str(script), str(src), str(dest)], capture_output=True, text=True, timeout=20, check=False)
    targets = sorted(dest.glob("logs-*")) if dest.is_dir() else []
    copied = sorted(p.name for p in targets[0].iterdir()) if len(targets) == 1 else []
    if run.returncode != 0 or copied != ["app one.log", "db.log"]:
        problems.append(f"exit {run.returncode}, copied {copied}, stderr {run.stderr.strip()!r}")
    elif run.stdout.strip() != f"copied 2 file(s) to {targets[0]}":
        problems.append(f"printed {run.stdout.strip()!r}")
    empty = Path(tmp, "no logs here")
    empty.mkdir()
    none = subprocess.run(["sh", str(script), str(empty), str(dest)], capture_output=True, text=True, timeout=20, check=False)
    if none.returncode != 0 or not none.stdout.startswith("copied 0 file(s) to "):
        problems.append(f"with no .log file: exit {none.returncode}, printed {none.stdout.strip()!r}")
    bare = subprocess.run(["sh", str(script), str(src)], capture_output=True, text=True, timeout=20, check=False)
    if bare.returncode != 2 or "usage: archive.sh SRC DEST" not in bare.stderr:
        problems.append(f"with one argument: exit {bare.returncode}, stderr {bare.stderr.strip()!r}")
if problems:
    sys.exit("\n".join(problems))
print("archive.sh: works with spaces, copies only .log files, says so")
