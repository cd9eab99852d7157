"""Reading an edit-block answer: markers as whole lines with a little drift, paths in the spellings models use,
fences as mere wrappers, problems with messages fit for the model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.delegation.paths import canonical_relative
from engine.executor.edits import apply_answer, normalize_path, parse_edits

BLOCK = "<<<<<<< SEARCH\nold\n=======\nnew\n>>>>>>> REPLACE\n"


@pytest.mark.parametrize("marker", ["<<<<< SEARCH", "<<<<<<<<< SEARCH", "<<<<<<<SEARCH", "<<<<<<< Search  "])
def test_a_search_marker_may_drift_in_length_case_and_trailing_blanks(marker: str) -> None:
    parsed = parse_edits(f"a.py\n{marker}\nold\n=======\nnew\n>>>>>>> REPLACE\n", outputs=["a.py"])
    assert [(b.search, b.replace) for b in parsed.blocks] == [("old\n", "new\n")]


@pytest.mark.parametrize("marker", ["<<<< SEARCH", "<<<<<<<<<< SEARCH", " <<<<<<< SEARCH", "<<<<<<< SEARCH here"])
def test_a_search_marker_too_short_too_long_or_inside_a_line_is_not_a_marker(marker: str) -> None:
    parsed = parse_edits(f"a.py\n{marker}\nold\n=======\nnew\n>>>>>>> REPLACE\n", outputs=["a.py"])
    assert parsed.blocks == ()


def test_a_divider_like_line_inside_a_line_of_text_is_content() -> None:
    text = "a.py\n<<<<<<< SEARCH\nx = '======='\n=======\ny = '>>>>>>> REPLACE'\n>>>>>>> REPLACE\n"
    [block] = parse_edits(text, outputs=["a.py"]).blocks
    assert (block.search, block.replace, block.alternatives) == ("x = '======='\n", "y = '>>>>>>> REPLACE'\n", ())


def test_every_divider_like_line_gives_a_reading_of_the_block() -> None:
    text = "doc.rst\n<<<<<<< SEARCH\nTitle\n=====\n=======\nTitle\n=========\n>>>>>>> REPLACE\n"
    [block] = parse_edits(text, outputs=["doc.rst"]).blocks
    assert block.readings == (("Title\n", "=======\nTitle\n=========\n"), ("Title\n=====\n", "Title\n=========\n"),
                              ("Title\n=====\n=======\nTitle\n", ""))


@pytest.mark.parametrize("spelling", ["./src/a.py", "src//a.py", "src\\a.py", ".\\src\\\\a.py", " src/./a.py "])
def test_paths_are_normalised_as_the_engine_stores_requested_paths(spelling: str) -> None:
    assert normalize_path(spelling) == canonical_relative(spelling.strip()) == "src/a.py"
    [block] = parse_edits(f"{spelling}\n```\n{BLOCK}```\n", outputs=["src/a.py"]).blocks
    assert block.path == "src/a.py"


def test_paths_are_matched_case_sensitively_with_a_suggestion() -> None:
    [problem] = parse_edits(f"src/A.py\n```\n{BLOCK}```\n", outputs=["src/a.py"]).problems
    assert problem.kind == "unknown_path" and "did you mean src/a.py" in problem.message


def test_a_refused_path_also_refuses_the_blocks_without_a_path_that_follow_it() -> None:
    parsed = parse_edits(f"other.py\n```\n{BLOCK}\n{BLOCK}```\n", outputs=["a.py"])
    assert parsed.blocks == () and [(p.kind, p.block) for p in parsed.problems] == [
        ("unknown_path", 1), ("unknown_path", 2)]


def test_blocks_keep_their_order_numbers_and_lines_in_the_answer() -> None:
    text = f"Intro.\n\na.py\n```\n{BLOCK}```\n\nb.py\n```\n{BLOCK.replace('old', 'old2')}```\n"
    parsed = parse_edits(text, outputs=["a.py", "b.py"])
    assert [(b.path, b.index, b.line) for b in parsed.blocks] == [("a.py", 1, 5), ("b.py", 2, 14)]
    assert parsed.blocks[0].source == BLOCK.rstrip("\n") and parsed.paths() == ("a.py", "b.py")


@pytest.mark.parametrize("info", ["python src/a.py", "python:src/a.py", 'python title="src/a.py"', "src/a.py"])
def test_a_path_in_the_fences_info_string_is_found(info: str) -> None:
    [block] = parse_edits(f"```{info}\n{BLOCK}```\n", outputs=["src/a.py", "src/b.py"]).blocks
    assert block.path == "src/a.py"


def test_a_blank_line_between_the_path_and_the_fence_is_allowed() -> None:
    [block] = parse_edits(f"src/b.py\n\n```python\n{BLOCK}```\n", outputs=["src/a.py", "src/b.py"]).blocks
    assert block.path == "src/b.py"


def test_a_sentence_naming_two_outputs_gives_no_path() -> None:
    parsed = parse_edits(f"Change a.py and b.py:\n```\n{BLOCK}```\n", outputs=["a.py", "b.py"])
    assert [p.kind for p in parsed.problems] == ["no_path"]
    assert "a.py, b.py" in parsed.problems[0].message


def test_an_unfinished_block_says_the_answer_was_probably_cut_at_the_token_limit() -> None:
    [problem] = parse_edits("a.py\n```\n<<<<<<< SEARCH\nold\n=======\nne", outputs=["a.py"]).problems
    assert problem.kind == "unfinished" and "token limit" in problem.message and problem.quote.endswith("ne")


def test_an_answer_without_blocks_is_a_problem_that_shows_the_form() -> None:
    [problem] = parse_edits("I could not find the function.", outputs=["a.py"]).problems
    assert problem.kind == "no_blocks" and "<<<<<<< SEARCH" in problem.message


def test_a_plain_fenced_file_ends_at_a_bare_fence_at_least_as_long_as_its_opening() -> None:
    text = "doc.md\n````markdown\n```\nshort fences stay inside\n```\n````\n"
    [block] = parse_edits(text, outputs=["doc.md"]).blocks
    assert block.whole and block.replace == "```\nshort fences stay inside\n```\n"


def test_a_fence_with_an_info_string_inside_a_plain_fenced_file_opens_a_nested_one() -> None:
    text = "doc.md\n```markdown\nText\n```js\nx()\n```\nMore\n```\n"
    [block] = parse_edits(text, outputs=["doc.md"]).blocks
    assert block.replace == "Text\n```js\nx()\n```\nMore\n"


def test_a_code_fence_under_a_sentence_is_not_a_file() -> None:
    parsed = parse_edits("Run it with:\n```sh\nmake test\n```\n", outputs=["a.py", "b.py"])
    assert parsed.blocks == () and [p.kind for p in parsed.problems] == ["no_blocks"]


def test_the_one_fenced_block_of_an_answer_for_one_output_is_that_output_whole() -> None:
    parsed = parse_edits("Here you go:\n```python\nX = 1\n```\n", outputs=["new.py"])
    [block] = parsed.blocks
    assert (block.path, block.whole, block.replace) == ("new.py", True, "X = 1\n")
    assert any("only requested output" in n for n in parsed.notes)


def test_a_bom_and_crlf_in_the_answer_itself_are_read_through() -> None:
    [block] = parse_edits(("\ufeffa.py\n" + BLOCK).replace("\n", "\r\n"), outputs=["a.py"]).blocks
    assert (block.search, block.replace) == ("old\n", "new\n")


_PIECES = ["a.py", "b.py", "other.py", "**a.py**", "```", "````", "```python", "~~~", "<<<<<<< SEARCH", "=======",
           ">>>>>>> REPLACE", "x = 1", "    y = 2", "", "Some prose.", "=====", "```python a.py"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40), st.booleans())
def test_no_answer_makes_the_parser_or_the_applier_raise(pieces: list[str], crlf: bool) -> None:
    text = "\n".join(pieces).replace("\n", "\r\n" if crlf else "\n")
    parsed = parse_edits(text, outputs=["a.py", "b.py"])
    assert all(p.message for p in parsed.problems) and all(b.path in ("a.py", "b.py") for b in parsed.blocks)
    result = apply_answer(parsed, {"a.py": b"x = 1\n    y = 2\n", "b.py": None})
    assert result.ok or result.contents == {}
    assert parsed.blocks or parsed.problems


def test_a_requested_path_with_spaces_is_found_alone_or_in_a_sentence() -> None:
    outputs = ["docs/My Notes.md", "a.py"]
    for above in ("docs/My Notes.md", "**docs/My Notes.md**", "Now docs/My Notes.md:"):
        [block] = parse_edits(f"{above}\n```\n{BLOCK}```\n", outputs=outputs).blocks
        assert block.path == "docs/My Notes.md", above


def test_a_path_that_climbs_out_never_matches_a_requested_one() -> None:
    for spelling in ("src/../src/a.py", "../src/a.py", "src/a.py/.."):
        parsed = parse_edits(f"{spelling}\n```\n{BLOCK}```\n", outputs=["src/a.py"])
        assert parsed.blocks == () and [p.kind for p in parsed.problems] == ["unknown_path"], spelling


def test_blocks_apply_in_sequence_so_a_block_repeated_after_another_applies_again() -> None:
    """x->y, y->x, x->y gives y (issue 19 point 8): only a repeat of the block just before is dropped."""
    to_y = "a.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n"
    to_x = "a.py\n<<<<<<< SEARCH\ny\n=======\nx\n>>>>>>> REPLACE\n"
    parsed = parse_edits(to_y + to_x + to_y, outputs=["a.py"])
    assert len(parsed.blocks) == 3 and not any("repeats" in n for n in parsed.notes)
    assert apply_answer(parsed, {"a.py": b"x\n"}).contents == {"a.py": b"y\n"}


def test_a_block_that_repeats_the_block_just_before_it_is_applied_once() -> None:
    to_y = "a.py\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE\n"
    parsed = parse_edits(to_y + "\nOnce more:\n\n" + to_y, outputs=["a.py"])
    assert len(parsed.blocks) == 1 and any("block 2 repeats block 1" in n for n in parsed.notes)
    assert apply_answer(parsed, {"a.py": b"x\n"}).contents == {"a.py": b"y\n"}
