"""Hidden check of docs-readme-usage: a Usage section between Install and License that shows the command in a
fenced block and names every option; the other sections as they were."""
import re
import sys
from pathlib import Path

CHECK = Path(__file__).parent


def sections(text: str) -> dict[str, str]:
    """`## Title` -> the section's text (the part before the first `##` under ''), each stripped."""
    parts = re.split(r"^## +(.+?)\s*$", text, flags=re.MULTILINE)
    found = {"": parts[0].strip()}
    for title, body in zip(parts[1::2], parts[2::2]):
        found[title.strip()] = body.strip()
    return found


new, old = sections(Path("README.md").read_text()), sections((CHECK / "original_README.md").read_text())
problems = []
if list(new) != ["", "Install", "Usage", "License"]:
    problems.append(f"sections in the order {list(new)}")
for title, body in old.items():
    if new.get(title) != body:
        problems.append(f"section {title or '(top)'!r} changed")
usage = new.get("Usage", "")
if not re.search(r"^(```|~~~)[^\n]*\n[^`~]*python3? csvstat\.py", usage, flags=re.MULTILINE):
    problems.append("no fenced code block running python csvstat.py")
missing = [o for o in ("--delimiter", "--columns", "--format", "--skip-blank") if o not in usage]
if missing or "path" not in usage.lower():
    problems.append(f"options not described: {', '.join(missing) or 'path'}")
if problems:
    sys.exit("\n".join(problems))
print("README.md: the Usage section as asked, the rest unchanged")
