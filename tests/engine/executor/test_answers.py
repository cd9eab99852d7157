from __future__ import annotations

import json
import re

import pytest

from engine.delegation.paths import canonical_relative
from engine.executor.answers import AnswerError, answer_schema, parse_answer, parse_whole_answer


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


WHOLE_CORPUS = [
    # (name, answer, outputs, expected {path: content} or the words of the error)
    ("path above a python fence", "a.py\n```python\nx = 1\n```\n", ["a.py"], {"a.py": "x = 1\n"}),
    ("tilde fence", "a.py\n~~~\nx = 1\n~~~\n", ["a.py"], {"a.py": "x = 1\n"}),
    ("four backticks around a Markdown fence", "README.md\n````markdown\n# T\n```sh\nrun\n```\n````\n",
     ["README.md"], {"README.md": "# T\n```sh\nrun\n```\n"}),
    ("path in the info string", "```python src/a.py\nx = 1\n```\n", ["src/a.py"], {"src/a.py": "x = 1\n"}),
    ("path in the info string after a colon", "```python:src/a.py\nx = 1\n```", ["src/a.py"], {"src/a.py": "x = 1\n"}),
    ("path in bold", "**src/a.py**\n```python\nx = 1\n```\n", ["src/a.py"], {"src/a.py": "x = 1\n"}),
    ("path in a leading comment", "```python\n# src/a.py\nx = 1\n```\n", ["src/a.py"],
     {"src/a.py": "# src/a.py\nx = 1\n"}),
    ("prose around two files", "Here you go.\n\na.py:\n```\nA = 1\n```\n\nAnd `b.py`:\n```\nB = 2\n```\nDone!",
     ["a.py", "b.py"], {"a.py": "A = 1\n", "b.py": "B = 2\n"}),
    ("a sentence naming the file", "Here is the updated a.py file:\n```python\nx = 1\n```\n", ["a.py"],
     {"a.py": "x = 1\n"}),
    ("one unnamed block, a usage example after it",
     "```python\ndef f():\n    return 1\n```\nUsage:\n```python\nf()\n```",
     ["f.py"], {"f.py": "def f():\n    return 1\n"}),
    ("left open at the end when the model stopped", "```python\ndef add(a, b):\n    return a + b", ["add.py"],
     {"add.py": "def add(a, b):\n    return a + b\n"}),
    ("CRLF and a BOM", "\ufeffa.py\r\n```\r\nx = 1\r\n```\r\n", ["a.py"], {"a.py": "x = 1\n"}),
    ("a file that was not requested", "b.py\n```\nx = 1\n```\n", ["a.py"], "not a file you may write"),
    ("a missing file", "a.py\n```\nx = 1\n```\n", ["a.py", "b.py"], "missing files: b.py"),
    ("no fence at all", "def f(): pass", ["a.py"], "holds no fenced file"),
    ("the opening fence left out, the closing one there", "def double(x):\n    return x * 2\n```", ["double.py"],
     {"double.py": "def double(x):\n    return x * 2\n"}),
    ("the path line put inside the block, last", "```python\ndef greet(name):\n    return name\ngreet.py\n```",
     ["greet.py"], {"greet.py": "def greet(name):\n    return name\n"}),
    ("the path line put inside the block, first", "```\nsrc/a.py\nx = 1\n```", ["src/a.py"], {"src/a.py": "x = 1\n"}),
    ("a block that is only its path keeps it", "a.txt\n```\na.txt\n```", ["a.txt"], {"a.txt": "a.txt\n"}),
    ("a lone fence after prose and code is not taken for code", "a.py\n```python\nx = 1\n```\nthen\n```",
     ["a.py"], {"a.py": "x = 1\n"}),
]


@pytest.mark.parametrize(("name", "answer", "outputs", "expected"), WHOLE_CORPUS, ids=[c[0] for c in WHOLE_CORPUS])
def test_a_messy_whole_form_answer_is_read_by_the_one_fence_reader(
    name: str, answer: str, outputs: list[str], expected: dict[str, str] | str,
) -> None:
    if isinstance(expected, str):
        with pytest.raises(AnswerError, match=re.escape(expected)):
            parse_whole_answer(answer, outputs, ended=True)
    else:
        assert parse_whole_answer(answer, outputs, ended=True) == expected


def test_a_whole_file_cut_at_the_token_limit_is_unfinished_unless_the_model_stopped_there() -> None:
    with pytest.raises(AnswerError, match="no closing fence"):
        parse_whole_answer("a.py\n```python\nx = 1\n", ["a.py"])
    assert parse_whole_answer("a.py\n```python\nx = 1\n", ["a.py"], ended=True) == {"a.py": "x = 1\n"}


def test_the_json_form_falls_back_to_the_same_fence_reader_with_tildes_and_long_fences() -> None:
    assert parse_answer("a.py\n~~~python\nx = 1\n~~~\n", ["a.py"]) == {"a.py": "x = 1\n"}
    body = json.dumps({"files": [{"path": "a.py", "content": "```\n"}]})
    assert parse_answer(f"````json\n{body}\n````\n", ["a.py"]) == {"a.py": "```\n"}
