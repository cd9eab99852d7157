from __future__ import annotations

import json

import pytest

from engine.executor.answers import AnswerError, answer_schema, parse_answer
from engine.executor.prompting import ContextFile, OutputSpec, attempt_messages, base_messages, pack_context


def count(text: str) -> int:
    return len(text) // 4 + 1


def test_the_schema_limits_paths_to_the_requested_ones() -> None:
    schema = answer_schema(["src/a.py", "src/b.py"])
    item = schema["properties"]["files"]["items"]
    assert item["properties"]["path"]["enum"] == ["src/a.py", "src/b.py"]
    assert item["required"] == ["path", "content"] and schema["required"] == ["files"]


def test_a_json_answer_is_read_and_unrequested_paths_are_not_accepted() -> None:
    text = json.dumps({"files": [{"path": "a.py", "content": "x = 1\n"}, {"path": "../evil", "content": "!"}]})
    assert parse_answer(text, ["a.py"]) == {"a.py": "x = 1\n"}
    with pytest.raises(AnswerError, match="not requested"):
        parse_answer(json.dumps({"files": [{"path": "/etc/passwd", "content": "!"}]}), ["a.py"])


def test_json_inside_a_fence_or_surrounded_by_text_is_found() -> None:
    body = json.dumps({"files": [{"path": "a.py", "content": "y"}]})
    assert parse_answer(f"Here:\n```json\n{body}\n```\nDone.", ["a.py"]) == {"a.py": "y"}
    assert parse_answer(f"Sure! {body} hope it helps", ["a.py"]) == {"a.py": "y"}


def test_fenced_code_blocks_are_the_fallback_when_the_schema_is_ignored() -> None:
    text = "src/a.py:\n```python\nA = 1\n```\nand\n```python src/b.py\nB = 2\n```\n"
    assert parse_answer(text, ["src/a.py", "src/b.py"]) == {"src/a.py": "A = 1\n", "src/b.py": "B = 2\n"}
    assert parse_answer("```\nonly = True\n```", ["one.py"]) == {"one.py": "only = True\n"}


def test_an_answer_missing_a_requested_file_is_an_error_for_the_model() -> None:
    with pytest.raises(AnswerError, match="missing files: b.py"):
        parse_answer(json.dumps({"files": [{"path": "a.py", "content": ""}]}), ["a.py", "b.py"])
    with pytest.raises(AnswerError, match="neither JSON"):
        parse_answer("I cannot do that.", ["a.py"])


def test_retry_messages_repeat_the_first_messages_byte_for_byte_and_add_the_failure() -> None:
    base = base_messages("Add tests", "test", [OutputSpec("t.py", "tests")], [ContextFile("m.py", "def f(): ...")])
    first = attempt_messages(base, [])
    third = attempt_messages(base, [{"answer": "A1", "kind": "verify", "detail": "E1"},
                                    {"answer": "A2", "kind": "answer", "detail": "E2"}])
    assert third[: len(first)] == first
    assert [m.role for m in third] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert third[2].content == "A1" and third[3].content.startswith("verification failed:\nE1")
    assert "E2" in third[5].content


def test_context_that_fits_is_kept_whole_in_the_callers_order() -> None:
    files = [ContextFile("a.py", "a" * 40), ContextFile("b.py", "b" * 40)]
    packed = pack_context(files, budget=1000, count=count)
    assert [f.path for f in packed.included] == ["a.py", "b.py"] and packed.skipped == ()
    assert packed.tokens <= 1000


def test_context_that_does_not_fit_trims_or_leaves_out_the_least_useful_and_reports_it() -> None:
    files = [
        ContextFile("notes.md", "n\n" * 2000),
        ContextFile("user.py", "class User: ...\n" * 20),
        ContextFile("huge.log", "x\n" * 5000),
    ]
    packed = pack_context(files, budget=600, count=count, task="Write tests for user.py")
    kept = {f.path: f for f in packed.included}
    skipped = {s["path"]: s for s in packed.skipped}
    assert "user.py" in kept and kept["user.py"].text == files[1].text  # named in the task: most useful, whole
    assert skipped["notes.md"]["reason"].startswith("trimmed") and "trimmed" in kept["notes.md"].text
    assert skipped["huge.log"]["kept_tokens"] == 0 and "huge.log" not in kept
    assert packed.tokens <= 600
