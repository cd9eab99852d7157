"""Hidden check of refactor-scheduler-rename-method: the module is the original with `_due_jobs` renamed to
`_jobs_due_at` at the definition and every call, node for node, and the old name is gone from the text."""
import ast
import sys
from pathlib import Path

CHECK = Path(__file__).parent
OLD, NEW = "_due_jobs", "_jobs_due_at"


class Rename(ast.NodeTransformer):
    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node.name == OLD:
            node.name = NEW
        return self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if node.attr == OLD:
            node.attr = NEW
        return self.generic_visit(node)


text = Path("scheduler.py").read_text()
expected = ast.dump(Rename().visit(ast.parse((CHECK / "original_scheduler.py").read_text())))
problems = []
if OLD in text:
    problems.append(f"{OLD} is still in scheduler.py, {text.count(OLD)} time(s)")
if ast.dump(ast.parse(text)) != expected:
    problems.append(f"scheduler.py is not the original with {OLD} renamed to {NEW} (and nothing else)")
if problems:
    sys.exit("\n".join(problems))
print(f"scheduler.py: {OLD} renamed to {NEW} everywhere, nothing else changed")
