"""The smallest edit-block answer for a known change (benchmark B7's helper): applied back, it gives the target
exactly, and it is far shorter than the whole-file answer when the changes are small."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.executor.edits import apply_answer, blocks_for, parse_edits, whole_file_answer
from engine.executor.edits.text import FileText

LINES = ["a", "b", "", "def f():", "    return 1", "x = 1  ", "\tz", "```", "# note"]


def _roundtrip(base: str | None, target: str, *, context_lines: int = 0) -> bytes | None:
    answer = blocks_for(base, target, path="f.txt", context_lines=context_lines)
    if base == target:
        assert answer == ""
        return target.encode()
    parsed = parse_edits(answer, outputs=["f.txt"])
    assert parsed.ok, parsed.problems
    files: dict[str, bytes | None] = {"f.txt": None if base is None else base.encode()}
    applied = apply_answer(parsed, files)
    assert applied.ok, [p.message for p in applied.problems]
    return applied.contents.get("f.txt", files["f.txt"])


@st.composite
def _changes(draw: st.DrawFn) -> tuple[str, str]:
    base = draw(st.lists(st.sampled_from(LINES), min_size=1, max_size=30))
    target = list(base)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(target)))
        cut = draw(st.integers(0, min(2, len(target) - at)))
        target[at : at + cut] = draw(st.lists(st.sampled_from([*LINES, "new", "    return 2"]), max_size=3))
    final, crlf = draw(st.booleans()), draw(st.booleans())
    texts = ["\n".join(lines) + ("\n" if final and lines else "") for lines in (base, target)]
    return tuple(t.replace("\n", "\r\n") if crlf else t for t in texts)  # type: ignore[return-value]


@settings(max_examples=300, deadline=None)
@given(_changes(), st.integers(0, 3))
def test_the_blocks_built_for_a_change_apply_back_to_exactly_the_target(change: tuple[str, str], context: int) -> None:
    base, target = change
    assume("\n" in base or "\r\n" not in target)  # a base without a line break cannot tell new lines to use CRLF
    old, new = FileText.from_text(base), FileText.from_text(target)
    kept_final = old.final_newline if old.lines else True  # what applying keeps (a filled empty file ends with one)
    if new.lines and new.final_newline != kept_final:
        with pytest.raises(ValueError, match="final newline"):
            blocks_for(base, target, path="f.txt", context_lines=context)
        return
    assert _roundtrip(base, target, context_lines=context) == target.encode()


def test_a_new_file_is_one_block_with_an_empty_search() -> None:
    answer = blocks_for(None, "x = 1\n", path="f.txt")
    assert answer == "f.txt\n```\n<<<<<<< SEARCH\n=======\nx = 1\n>>>>>>> REPLACE\n```\n"
    assert _roundtrip(None, "x = 1\n") == b"x = 1\n"


def test_n_small_changes_give_n_blocks_far_shorter_than_the_whole_file() -> None:
    base_lines = [f"def f{i}(x):\n    return x + {i}\n" for i in range(100)]
    target_lines = list(base_lines)
    for i in (10, 40, 70):
        target_lines[i] = target_lines[i].replace(f"x + {i}", f"x - {i}")
    base, target = "\n".join(base_lines), "\n".join(target_lines)
    answer = blocks_for(base, target, path="f.py", context_lines=1)
    assert answer.count("<<<<<<< SEARCH") == 3
    assert len(answer) * 5 < len(whole_file_answer({"f.py": target}))
    assert _roundtrip(base, target, context_lines=1) == target.encode()


def test_the_search_widens_until_it_matches_once_and_keeps_the_context_asked_for() -> None:
    base = "x\nx\nx\ny\n"
    answer = blocks_for(base, "x\nx\nX\ny\n", path="f.txt")
    search = answer.split("<<<<<<< SEARCH\n")[1].split("=======")[0]
    assert search == "x\ny\n"
    with_context = blocks_for("a\nb\nc\nd\ne\n", "a\nb\nC\nd\ne\n", path="f.txt", context_lines=2)
    assert with_context.split("<<<<<<< SEARCH\n")[1].split("=======")[0] == "a\nb\nc\nd\ne\n"


def test_content_with_fences_gets_a_longer_fence() -> None:
    answer = blocks_for("```\ncode\n```\n", "```\ncode2\n```\n", path="doc.md", context_lines=1)
    assert answer.startswith("doc.md\n````\n")
    assert _roundtrip("```\ncode\n```\n", "```\ncode2\n```\n", context_lines=1) == b"```\ncode2\n```\n"


def test_changes_that_edit_blocks_cannot_express_are_refused() -> None:
    with pytest.raises(ValueError, match="final newline"):
        blocks_for("a\n", "b", path="f.txt")
    with pytest.raises(ValueError, match="marker"):
        blocks_for("a\n", "a\n=======\n", path="f.txt")


def test_the_whole_file_answer_is_the_json_form() -> None:
    assert whole_file_answer({"a.py": "x\n"}) == '{"files": [{"path": "a.py", "content": "x\\n"}]}'
