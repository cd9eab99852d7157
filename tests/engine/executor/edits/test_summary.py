"""A compact account of a change: lines added and removed, the functions, classes or sections touched, a diff."""

from __future__ import annotations

from engine.executor.edits import summarize_change, unified_diff

PY = """import os


@decorate
class Cart:
    def add(self, item):
        self.items.append(item)

    def total(self):
        return sum(self.items)


def area(r):
    return r * r
"""


def test_python_changes_are_placed_in_their_innermost_def_or_class() -> None:
    after = PY.replace("return sum(self.items)", "return round(sum(self.items), 2)").replace(
        "import os", "import os\nimport sys")
    change = summarize_change(PY, after, path="cart.py")
    assert (change.added, change.removed) == (2, 1)
    assert change.regions == ("(top level)", "Cart.total")


def test_a_removed_function_is_named_from_the_version_before() -> None:
    after = PY.replace("\n\ndef area(r):\n    return r * r\n", "")
    assert summarize_change(PY, after, path="cart.py").regions == ("area",)


def test_a_decorator_belongs_to_what_it_decorates() -> None:
    assert summarize_change(PY, PY.replace("@decorate", "@decorated"), path="cart.py").regions == ("Cart",)


def test_python_that_does_not_parse_falls_back_to_the_nearest_heading_line() -> None:
    broken = PY.replace("return r * r", "return r * r +")
    assert summarize_change(PY, broken, path="cart.py").regions == ("def area(r):",)


def test_other_files_name_the_nearest_heading_like_line_above_the_change() -> None:
    js = "const a = 1;\n\nexport function load(path) {\n  return read(path);\n}\n"
    assert summarize_change(js, js.replace("read(path)", "read(path, 'utf8')"), path="x.js").regions == (
        "export function load(path) {",)
    md = "# Tool\n\n## Usage\n\nRun it.\n"
    assert summarize_change(md, md + "Twice.\n", path="README.md").regions == ("## Usage",)
    toml = "[project]\nname = 'x'\n\n[tool.ruff]\nline-length = 100\n"
    assert summarize_change(toml, toml.replace("100", "120"), path="p.toml").regions == ("[tool.ruff]",)
    assert summarize_change("a\nb\n", "a\nc\n", path="notes.txt").regions == ("(top level)",)


def test_a_new_file_counts_every_line_as_added() -> None:
    change = summarize_change(None, b"x = 1\ny = 2\n", path="new.py")
    assert (change.added, change.removed, change.created) == (2, 0, True)


def test_line_endings_alone_do_not_count_as_changes() -> None:
    assert summarize_change(b"a\r\nb\r\n", b"a\r\nb\r\n", path="x").added == 0


def test_the_unified_diff_has_git_style_headers_and_marks_a_missing_final_newline() -> None:
    assert unified_diff("a\nb\n", "a\nB", path="x.txt") == (
        "--- a/x.txt\n+++ b/x.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n\\ No newline at end of file\n")
    assert unified_diff(None, "new\n", path="n.txt").startswith("--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+new\n")
    assert unified_diff("same\n", "same\n", path="x.txt") == ""
