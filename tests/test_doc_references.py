"""Every file the docs, the code and the tests cite is in the repository: a relative link in a Markdown file, a repo
path in its text, a root document (`BENCHMARKS.md`) named in a docstring or comment. A citation of a file that is not
here (a design document kept outside the repository, a module since moved) sends a reader nowhere."""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

TOP_DIRS = ("engine", "states", "mcp_adapter", "bench", "scripts", "diagrams", "docs", "tests")
FIXTURE_TREES = ("mcp_adapter/resources/eval/",)
"""The eval suite's task files: the scratch projects' own READMEs and modules, which cite their own files."""

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(rf"(?<![\w/.-])((?:{'|'.join(TOP_DIRS)})/[\w./-]*)")
FILE_LIKE = re.compile(r"\.(?:py|md|sh|toml|mmd|svg|json|txt)$|/$")
ROOT_DOC = re.compile(r"(?<![\w/.-])([A-Z][A-Z_]+\.md)\b")
"""An all-capitals document name (README.md, BENCHMARKS.md): at the root or in docs/."""
OTHER_REPOSITORIES = {"engine/testing/ollama_double/__init__.py": {"docs/api.md"}}
"""Files of another project cited by their path there (Ollama's API reference), not of this one."""


def _tracked(pattern: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=REPO, capture_output=True, text=True, check=True).stdout
    names = [n for n in out.splitlines() if n and not n.startswith(FIXTURE_TREES)]
    # Files added but not committed yet count too (git ls-files --others for the new docs of a branch).
    others = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", pattern], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    names += [n for n in others.splitlines() if n and not n.startswith(FIXTURE_TREES)]
    return sorted({REPO / n for n in names})


def _exists(path: str) -> bool:
    clean = path.rstrip(".,:;")
    if not clean or "{" in clean or "*" in clean or "<" in clean:
        return True  # a template (`tests/test_{stem}.py`) or a glob, not a file
    return (REPO / clean.split("::", 1)[0]).exists()


def _root_doc_exists(name: str) -> bool:
    return (REPO / name).exists() or (REPO / "docs" / name).exists()


def markdown_problems(path: Path) -> list[str]:
    """What a Markdown file cites that is not there: links (relative to the file) and repo paths (from the root)."""
    text = path.read_text(encoding="utf-8")
    problems = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        if not (path.parent / target.split("#", 1)[0]).exists():
            problems.append(f"link {target}")
    spans = set(CODE_SPAN.findall(text))
    for found in REPO_PATH.findall(text):
        cited = found.rstrip(".,:;")
        in_code = any(span == cited or span.startswith(cited + "`") or cited in span.split() for span in spans)
        if (in_code or FILE_LIKE.search(cited)) and not _exists(cited):
            problems.append(f"path {cited}")
    problems += [f"document {name}" for name in ROOT_DOC.findall(text) if not _root_doc_exists(name)]
    return problems


def _prose(source: str) -> str:
    """The comments and the docstrings (every bare string statement) of a Python file: where it cites files. String
    literals are left out: the tests' scratch projects have files of their own, with names like the repository's."""
    parts = [tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline)
             if tok.type == tokenize.COMMENT]
    parts += [node.value.value for node in ast.walk(ast.parse(source))
              if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
              and isinstance(node.value.value, str)]
    return "\n".join(parts)


def python_problems(path: Path) -> list[str]:
    prose = _prose(path.read_text(encoding="utf-8"))
    problems = [f"document {name}" for name in ROOT_DOC.findall(prose) if not _root_doc_exists(name)]
    problems += [f"path {p}" for p in REPO_PATH.findall(prose) if FILE_LIKE.search(p.rstrip(".,:;"))
                 and not _exists(p)]
    return problems


def test_every_file_a_markdown_document_cites_is_in_the_repository() -> None:
    documents = _tracked("*.md")
    assert REPO / "README.md" in documents and REPO / "docs" / "cli.md" in documents
    problems = {str(p.relative_to(REPO)): found for p in documents if (found := markdown_problems(p))}
    assert problems == {}


def test_every_file_a_docstring_or_comment_cites_is_in_the_repository() -> None:
    sources = _tracked("*.py")
    assert len(sources) > 100
    problems = {}
    for source in sources:
        name = str(source.relative_to(REPO))
        found = [f for f in python_problems(source) if f.split(" ", 1)[1] not in OTHER_REPOSITORIES.get(name, ())]
        if found:
            problems[name] = found
    assert problems == {}


@pytest.mark.parametrize(("text", "problem"), [
    ('The rules (DESIGN.md "What the model answers")', "document DESIGN.md"),
    ("see [the notes](nowhere.md)", "link nowhere.md"),
    ("fixed in `engine/runner.py` `_finish`", "path engine/runner.py"),
    ("stands in: engine/testing/ollama_double.py.", "path engine/testing/ollama_double.py"),
])
def test_a_markdown_citation_of_a_missing_file_is_found(tmp_path: Path, text: str, problem: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"{text}\n\nThe ratio engine/baseline and [the CLI](https://example.com/x.md) are no files.\n",
                    encoding="utf-8")
    assert markdown_problems(page) == [problem]


def test_a_python_file_is_held_to_its_comments_and_docstrings_not_its_string_literals(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""The rules (DESIGN.md)."""\n\n# moved from engine/runner.py\n'
                      'PAGE = "docs/guide.md"  # a scratch project\'s file\n', encoding="utf-8")
    assert python_problems(module) == ["document DESIGN.md", "path engine/runner.py"]
