from __future__ import annotations

import json

import pytest

from engine.delegation.paths import canonical_relative
from engine.executor.answers import AnswerError, answer_schema, parse_answer


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


@pytest.mark.parametrize("spelling", ["./src/a.py", "src//a.py", "src\\a.py", ".\\src\\\\a.py", " src/./a.py "])
def test_the_model_may_spell_a_requested_path_as_the_engine_would_store_it(spelling: str) -> None:
    # The run stores canonical_relative's spelling; the answer's reading must accept the same aliases.
    requested = canonical_relative(spelling)
    assert requested == "src/a.py" or spelling.strip() != spelling
    answer = json.dumps({"files": [{"path": spelling, "content": "A = 1\n"}]})
    assert parse_answer(answer, [canonical_relative(spelling.strip())]) == {"src/a.py": "A = 1\n"}
    with pytest.raises(AnswerError, match="not requested"):
        parse_answer(json.dumps({"files": [{"path": spelling.replace("a.py", "b.py"), "content": ""}]}),
                     ["src/a.py"])
