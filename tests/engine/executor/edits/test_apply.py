"""The rules of docs/edit-blocks.md, pinned: only requested outputs, a SEARCH matches exactly once, only
safe differences tolerated (and reported), markers only as whole lines, bytes kept (CRLF, no final newline, BOM),
non-UTF-8 refused up front, all blocks of an answer together or none."""

from __future__ import annotations

from engine.executor.edits import (
    EditBlock,
    apply_answer,
    apply_edits,
    closest_lines,
    parse_edits,
)


def _answer(path: str, search: str, replace: str, fence: str = "```") -> str:
    return f"{path}\n{fence}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n{fence}\n"


def _apply(answer: str, files: dict[str, bytes | None]):  # type: ignore[no-untyped-def]
    return apply_answer(parse_edits(answer, outputs=list(files)), files)


def _block(search: str, replace: str, *, path: str = "a.py", index: int = 1) -> EditBlock:
    return EditBlock(path, search, replace, index=index, line=1)


BASE = b"def one():\n    return 1\n\n\ndef two():\n    return 2\n"


def test_a_block_for_a_path_that_was_not_requested_is_refused_and_the_allowed_paths_are_named() -> None:
    result = _apply(_answer("secrets.py", "", "TOKEN = 1\n"), {"a.py": BASE})
    assert result.contents == {}
    [problem] = result.problems
    assert problem.kind == "unknown_path" and "secrets.py" in problem.message and "a.py" in problem.message
    assert "<<<<<<< SEARCH" in problem.quote


def test_a_path_outside_the_project_is_refused_like_any_other() -> None:
    result = _apply(_answer("../../etc/passwd", "", "x\n"), {"a.py": BASE})
    assert [p.kind for p in result.problems] == ["unknown_path"] and result.contents == {}


def test_a_search_that_matches_nothing_is_an_error_with_the_closest_real_lines() -> None:
    applied = apply_edits(BASE, [_block("def two():\n    return 3\n", "def two():\n    return 4\n")], path="a.py")
    assert applied.content is None
    [problem] = applied.problems
    assert problem.kind == "no_match" and problem.block == 1
    assert problem.closest == ((5, "def two():"), (6, "    return 2"))


def test_a_search_that_matches_several_places_is_an_error_naming_their_lines() -> None:
    base = b"x = 1\ny = 2\nx = 1\n"
    [problem] = apply_edits(base, [_block("x = 1\n", "x = 9\n")], path="a.py").problems
    assert problem.kind == "several_matches" and "lines 1, 3" in problem.message


def test_several_matches_with_trailing_whitespace_ignored_is_still_an_error() -> None:
    [problem] = apply_edits(b"x = 1 \nx = 1\t\n", [_block("x = 1\n", "x = 2\n")], path="a.py").problems
    assert problem.kind == "several_matches"


def test_an_empty_search_on_an_existing_file_is_an_error() -> None:
    [problem] = apply_edits(BASE, [_block("", "print('hi')\n")], path="a.py").problems
    assert problem.kind == "empty_search_existing"


def test_an_empty_search_on_a_file_that_does_not_exist_creates_it_whole() -> None:
    applied = apply_edits(None, [_block("", "A = 1\n")], path="a.py")
    assert applied.content == b"A = 1\n" and applied.created


def test_an_empty_search_fills_a_file_that_exists_but_is_empty() -> None:
    assert apply_edits(b"", [_block("", "A = 1\n")], path="a.py").content == b"A = 1\n"


def test_a_search_on_a_file_that_does_not_exist_is_an_error() -> None:
    [problem] = apply_edits(None, [_block("A = 1\n", "A = 2\n")], path="a.py").problems
    assert problem.kind == "search_on_absent"


def test_trailing_whitespace_differences_are_tolerated_and_reported() -> None:
    applied = apply_edits(b"a = 1   \nb = 2\n", [_block("a = 1\nb = 2  \n", "a = 1\nb = 3\n")], path="a.py")
    assert applied.content == b"a = 1\nb = 3\n"
    assert any("trailing whitespace" in n for n in applied.notes)


def test_a_search_missing_the_files_indentation_is_shifted_consistently_and_reported() -> None:
    base = b"class A:\n    def f(self):\n        return 1\n"
    block = _block("def f(self):\n    return 1\n", "def f(self):\n    return 2\n\ndef g(self):\n    pass\n")
    applied = apply_edits(base, [block], path="a.py")
    assert applied.content == b"class A:\n    def f(self):\n        return 2\n\n    def g(self):\n        pass\n"
    assert any("added 4 spaces" in n for n in applied.notes)


def test_a_search_with_more_indentation_than_the_file_is_shifted_back() -> None:
    base = b"def f():\n    return 1\n"
    applied = apply_edits(base, [_block("    def f():\n        return 1\n", "    def f():\n        return 2\n")],
                          path="a.py")
    assert applied.content == b"def f():\n    return 2\n"
    assert any("removed 4 spaces" in n for n in applied.notes)


def test_an_inconsistent_indentation_or_other_differences_are_not_tolerated() -> None:
    base = b"def f():\n    return 1\n"
    for search in ("def f():\n  return 1\n", "def f():\n    return 1;\n", "def  f():\n    return 1\n",
                   "def f():\n\treturn 1\n"):
        [problem] = apply_edits(base, [_block(search, "x\n")], path="a.py").problems
        assert problem.kind == "no_match", search


def test_markers_count_only_as_whole_lines() -> None:
    base = b"A = '=======' \nB = '<<<<<<< SEARCH'\n"
    answer = ("a.py\n```\n<<<<<<< SEARCH\nA = '=======' \nB = '<<<<<<< SEARCH'\n=======\nA = '>>>>>>> REPLACE'\n"
              "B = 2\n>>>>>>> REPLACE\n```\n")
    assert _apply(answer, {"a.py": base}).contents == {"a.py": b"A = '>>>>>>> REPLACE'\nB = 2\n"}


def test_an_rst_underline_inside_the_content_is_not_the_divider() -> None:
    base = b"Title\n=======\n\nOld text.\n\nOther\n=======\n\nMore.\n"
    answer = _answer("doc.rst", "Title\n=======\n\nOld text.\n", "Title\n=======\n\nNew text.\n")
    result = _apply(answer, {"doc.rst": base})
    assert result.contents == {"doc.rst": base.replace(b"Old", b"New")}


def test_a_markdown_fence_inside_the_content_does_not_break_the_block() -> None:
    base = b"# Use\n\n```sh\nrun --a\n```\n\nEnd.\n"
    answer = _answer("README.md", "```sh\nrun --a\n```\n", "```sh\nrun --a\nrun --b\n```\n")
    assert _apply(answer, {"README.md": base}).contents == {"README.md": base.replace(b"--a\n", b"--a\nrun --b\n")}


def test_crlf_line_endings_are_kept_and_new_lines_get_them() -> None:
    base = BASE.replace(b"\n", b"\r\n")
    applied = apply_edits(base, [_block("def two():\n    return 2\n", "def two():\n    return 2\n\n\nTHREE = 3\n")],
                          path="a.py")
    assert applied.content == base + b"\r\n\r\nTHREE = 3\r\n"


def test_mixed_line_endings_keep_each_untouched_lines_own() -> None:
    assert apply_edits(b"a\r\nb\nc\nd\n", [_block("c\n", "C\n")], path="a.txt").content == b"a\r\nb\nC\nd\n"
    assert apply_edits(b"a\nb\r\nc\r\n", [_block("a\n", "A\n")], path="a.txt").content == b"A\r\nb\r\nc\r\n"


def test_a_missing_final_newline_is_kept_when_the_last_line_changes_or_goes() -> None:
    base = b"a\nb\nc"
    assert apply_edits(base, [_block("c\n", "C\n")], path="a.txt").content == b"a\nb\nC"
    assert apply_edits(base, [_block("b\nc\n", "")], path="a.txt").content == b"a"
    assert apply_edits(base, [_block("c\n", "c\nd\n")], path="a.txt").content == b"a\nb\nc\nd"
    assert apply_edits(b"a\nb\n", [_block("b\n", "b\nc\n")], path="a.txt").content == b"a\nb\nc\n"


def test_a_bom_is_kept() -> None:
    applied = apply_edits(b"\xef\xbb\xbfa\nb\n", [_block("a\n", "A\n")], path="a.txt")
    assert applied.content == b"\xef\xbb\xbfA\nb\n"


def test_a_lone_carriage_return_stays_inside_its_line() -> None:
    assert apply_edits(b"a\rb\nc\n", [_block("c\n", "C\n")], path="a.txt").content == b"a\rb\nC\n"


def test_an_output_that_is_not_utf8_is_refused_before_any_block_is_tried() -> None:
    applied = apply_edits(b"caf\xe9\n", [_block("caf\n", "cafe\n")], path="latin1.txt")
    [problem] = applied.problems
    assert problem.kind == "not_utf8" and "latin1.txt" in problem.message and "0xe9" in problem.message


def test_a_non_utf8_output_that_no_block_touches_is_left_alone() -> None:
    result = _apply(_answer("a.py", "def one():\n", "def uno():\n"), {"a.py": BASE, "b.bin": b"\xff\xfe"})
    assert result.ok and set(result.contents) == {"a.py"}


def test_all_blocks_of_an_answer_apply_together_or_not_at_all() -> None:
    files: dict[str, bytes | None] = {"a.py": BASE, "b.py": b"B = 1\n", "c.py": None}
    good = _answer("a.py", "def one():\n", "def uno():\n") + _answer("c.py", "", "C = 1\n")
    assert set(_apply(good, files).contents) == {"a.py", "c.py"}
    bad = good + _answer("b.py", "B = 2\n", "B = 3\n")
    result = _apply(bad, files)
    assert result.contents == {} and [p.kind for p in result.problems] == ["no_match"]
    assert all(a.content is not None for a in result.files if a.path != "b.py")


def test_every_failing_block_is_reported_at_once_in_answer_order() -> None:
    answer = (_answer("a.py", "nope\n", "x\n") + _answer("a.py", "def two():\n", "def deux():\n")
              + _answer("a.py", "", "y\n") + _answer("z.py", "", "z\n"))
    result = _apply(answer, {"a.py": BASE})
    assert [(p.block, p.kind) for p in result.problems] == [
        (1, "no_match"), (3, "empty_search_existing"), (4, "unknown_path")]


def test_blocks_apply_in_sequence_each_to_what_the_blocks_before_it_left() -> None:
    blocks = [_block("def one():\n", "def uno():\n"),
              _block("def uno():\n    return 1\n", "def uno():\n    return 11\n", index=2)]
    expected = BASE.replace(b"one():\n    return 1", b"uno():\n    return 11")
    assert apply_edits(BASE, blocks, path="a.py").content == expected


def test_a_block_that_changes_nothing_is_noted() -> None:
    applied = apply_edits(BASE, [_block("def one():\n", "def one():\n")], path="a.py")
    assert applied.content == BASE and any("the same" in n for n in applied.notes)
    assert _apply(_answer("a.py", "def one():\n", "def one():\n"), {"a.py": BASE}).contents == {}


def test_closest_lines_finds_the_most_similar_region_ignoring_indentation() -> None:
    text = "import os\n\nclass A:\n    def load(self, path):\n        return open(path).read()\n"
    assert closest_lines(text, "def load(self, p):\n    return open(p).read()\n") == (
        (4, "    def load(self, path):"), (5, "        return open(path).read()"))


def test_closest_lines_are_none_when_nothing_is_alike() -> None:
    assert closest_lines("aaaa\nbbbb\n", "zzzzzzzzzz 1234567\n") == ()
    assert closest_lines("", "x\n") == ()
