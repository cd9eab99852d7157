"""How the executor model's answer is read in the `json` and `whole` forms (the edit form: engine.executor.edits).
Pure functions: no IO, no backend.

- `answer_schema`: the JSON schema of the JSON form's answer, `{files: [{path, content}]}`, with `path` an enum of the
  requested output paths (grammar-constrained backends then cannot invent a path).
- `parse_answer`: the JSON form: JSON first (the whole answer, a fenced JSON block, or the outermost braces), then
  fenced files for backends that ignore the schema; only listed paths pass.
- `parse_whole_answer`: the `whole` form: each file as its path on its own line and one fenced block. Both read
  fences with the one fence reader (engine.executor.edits.parse_whole, fenced_bodies).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from engine.executor.edits import fenced_bodies, normalize_path, parse_whole
from engine.executor.forms import ANSWER_FORM_ENV, ANSWER_FORMS, check_answer_form

__all__ = [
    "ANSWER_FORMS",
    "ANSWER_FORM_ENV",
    "AnswerError",
    "answer_schema",
    "check_answer_form",
    "parse_answer",
    "parse_whole_answer",
]


class AnswerError(ValueError):
    """The model's answer cannot be used; the message is sent back to it on the next attempt."""


def answer_schema(paths: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "files": {
                "type": "array",
                "minItems": 1,
                "maxItems": len(paths),
                "items": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "enum": list(paths)},
                        "content": {"type": "string"},
                    },
                    "required": ["path", "content"],
                },
            }
        },
        "required": ["files"],
    }


def _json_candidates(text: str) -> list[str]:
    stripped = text.strip()
    candidates = [stripped]
    for info, body in fenced_bodies(text):
        if info.lower() in ("", "json") and (body := body.strip()) and body not in candidates[-1:]:
            candidates.append(body)
    start, end = stripped.find("{"), stripped.rfind("}")
    if 0 <= start < end:
        candidates.append(stripped[start : end + 1])
    return candidates


def _from_json(text: str) -> list[tuple[str, str]] | None:
    for candidate in _json_candidates(text):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("files"), list):
            out = []
            for item in value["files"]:
                if not isinstance(item, dict) or not isinstance(item.get("path"), str) or not isinstance(
                    item.get("content"), str
                ):
                    raise AnswerError('each entry of "files" must be an object with string "path" and "content"')
                out.append((item["path"], item["content"]))
            return out
    return None


def _from_fences(text: str, paths: Sequence[str], *, ended: bool) -> list[tuple[str, str]]:
    """The answer read as whole files in fences; AnswerError with the reader's first problem."""
    parsed = parse_whole(text, outputs=paths, ended=ended)
    if parsed.problems:
        raise AnswerError(parsed.problems[0].message)
    return [(b.path, b.replace) for b in parsed.blocks]


def parse_answer(text: str, paths: Sequence[str], *, ended: bool = False) -> dict[str, str]:
    """`{path: content}` for every requested path; AnswerError (with a message for the model) otherwise. `ended`:
    the model stopped on its own (not at the token limit), as in parse_whole."""
    files = _from_json(text)
    if files is None:
        if not any(line.lstrip(" \t").startswith(("```", "~~~")) for line in text.splitlines()):
            raise AnswerError('the answer is neither JSON {"files": [{"path", "content"}]} nor fenced code blocks')
        files = _from_fences(text, paths, ended=ended)
    allowed = set(paths)
    result: dict[str, str] = {}
    unknown = []
    for path, content in files:
        key = path if path in allowed else normalize_path(path)
        if key not in allowed:
            unknown.append(path)
            continue
        result[key] = content
    missing = [p for p in paths if p not in result]
    if unknown and not result:
        raise AnswerError(f"paths {unknown} were not requested; write only: {', '.join(paths)}")
    if missing:
        raise AnswerError(f"missing files: {', '.join(missing)} (write every requested file in full)")
    return result


def _opening_fence_left_out(text: str) -> str:
    """An answer that starts with the code and closes a fence it never opened (its only fence line is a bare one at
    the end: the embedded 135M model answered `def double(x): ...` so) is that one block. Read as it stands, the bare
    fence would open an empty block and the file would be written empty."""
    lines = text.rstrip().splitlines()
    fences = [i for i, line in enumerate(lines) if line.lstrip(" \t").startswith(("```", "~~~"))]
    if len(lines) > 1 and fences == [len(lines) - 1] and lines[-1].strip() in ("```", "~~~"):
        return f"{lines[-1].strip()}\n{text}"
    return text


def _without_own_path_line(path: str, content: str) -> str:
    """The block's content less a bare line that is the block's own path, as its first or last line: the path line
    the form asks for, put inside the fence (the embedded 135M model ended `greet.py`'s block with `greet.py`, which
    Python then ran as code). Only the exact path, and only with other lines left."""
    lines = content.splitlines(keepends=True)
    if len(lines) > 1 and lines[-1].strip() == path:
        lines = lines[:-1]
    if len(lines) > 1 and lines[0].strip() == path:
        lines = lines[1:]
    return "".join(lines)


def parse_whole_answer(text: str, paths: Sequence[str], *, ended: bool = False) -> dict[str, str]:
    """The `whole` form: `{path: content}` for every requested path, each the content of its fenced block (the last
    one, when a file is given twice); AnswerError (with a message for the model) otherwise. `ended`: as in
    parse_whole."""
    parsed = parse_whole(_opening_fence_left_out(text), outputs=paths, ended=ended)
    if parsed.problems:
        raise AnswerError("; ".join(p.message for p in parsed.problems[:3]))
    files = {b.path: _without_own_path_line(b.path, b.replace) for b in parsed.blocks}
    if missing := [p for p in paths if p not in files]:
        raise AnswerError(f"missing files: {', '.join(missing)} (write every requested file in full: its path on a "
                          "line of its own, then the complete file in one fenced block)")
    return files
