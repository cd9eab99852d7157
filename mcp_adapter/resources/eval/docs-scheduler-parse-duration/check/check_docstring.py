"""Hidden check of docs-scheduler-parse-duration: parse_duration has a docstring that names its result and its
error, and apart from that docstring the module is the original, node for node."""
import ast
import sys
from pathlib import Path

CHECK = Path(__file__).parent


def function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)


new = ast.parse(Path("scheduler.py").read_text())
old = ast.parse((CHECK / "original_scheduler.py").read_text())
doc = ast.get_docstring(function(new, "parse_duration")) or ""
problems = []
if "ValueError" not in doc or "second" not in doc.lower():
    problems.append(f"the docstring does not say it returns seconds and raises ValueError: {doc!r}")
target = function(new, "parse_duration")
if doc:
    target.body = target.body[1:]
if ast.dump(new) != ast.dump(old):
    problems.append("scheduler.py changed elsewhere than parse_duration's docstring")
if problems:
    sys.exit("\n".join(problems))
print("scheduler.py: parse_duration documented, nothing else changed")
