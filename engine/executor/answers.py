"""How the executor model's answer is read. Pure functions: no IO, no backend.

- `answer_schema`: the JSON schema of the answer, `{files: [{path, content}]}`, with `path` an enum of the requested
  output paths (grammar-constrained backends then cannot invent a path).
- `parse_answer`: JSON first, then fenced code blocks for backends that ignore the schema; only listed paths pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["AnswerError", "answer_schema", "parse_answer"]


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


_FENCE = re.compile(r"```([^\n`]*)\n(.*?)```", re.DOTALL)


def _json_candidates(text: str) -> list[str]:
    stripped = text.strip()
    candidates = [stripped]
    for info, body in _FENCE.findall(text):
        if info.strip().lower() in ("", "json"):
            candidates.append(body.strip())
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


def _from_fences(text: str, paths: Sequence[str]) -> list[tuple[str, str]]:
    """Code blocks named by their info string or by the line before them; one block for one file needs no name."""
    found: list[tuple[str, str]] = []
    blocks = list(_FENCE.finditer(text))
    for m in blocks:
        info = m.group(1).strip()
        before = text[: m.start()].rstrip().splitlines()[-1:] or [""]
        named = next(
            (p for p in paths if p in info.split() or info.endswith(p) or p in before[0]), None
        )
        if named is not None:
            found.append((named, m.group(2)))
    if not found and len(blocks) == 1 and len(paths) == 1:
        found.append((paths[0], blocks[0].group(2)))
    return found


def _spelling(path: str) -> str:
    # The requested paths are stored in engine.delegation.paths.canonical_relative's spelling; the model may write
    # `./a`, `a//b` or `a\\b` for them. The executor does not import the delegation room: a test holds the two equal.
    return "/".join(part for part in path.strip().replace("\\", "/").split("/") if part not in ("", "."))


def parse_answer(text: str, paths: Sequence[str]) -> dict[str, str]:
    """`{path: content}` for every requested path; AnswerError (with a message for the model) otherwise."""
    files = _from_json(text)
    if files is None:
        files = _from_fences(text, paths)
        if not files:
            raise AnswerError('the answer is neither JSON {"files": [{"path", "content"}]} nor fenced code blocks')
    allowed = set(paths)
    result: dict[str, str] = {}
    unknown = []
    for path, content in files:
        key = path if path in allowed else _spelling(path)
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
