"""Hidden check of docs-geometry-docstrings: every public def and class has a docstring, and with docstrings left
out the module is the original, node for node."""
import ast
import sys
from pathlib import Path

CHECK = Path(__file__).parent


def without_docstrings(tree: ast.Module) -> str:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


new = ast.parse(Path("geometry.py").read_text())
old = ast.parse((CHECK / "original_geometry.py").read_text())
missing = [node.name for node in ast.walk(new)
           if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_")
           and not (ast.get_docstring(node) or "").strip()]
problems = [f"no docstring: {', '.join(missing)}"] if missing else []
if without_docstrings(new) != without_docstrings(old):
    problems.append("the code changed, not only the docstrings")
if problems:
    sys.exit("\n".join(problems))
print("geometry.py: every public def and class documented, the code unchanged")
