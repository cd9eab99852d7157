"""How the executor model's answer is read. Pure functions: no IO, no backend.

- `answer_schema`: the JSON schema of the answer, `{files: [{path, content}]}`, with `path` an enum of the requested
  output paths (grammar-constrained backends then cannot invent a path).
- `parse_answer`: JSON first, then fenced code blocks for backends that ignore the schema; only listed paths pass.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

from engine.errors import InvalidArgument

__all__ = ["ANSWER_FORMS", "ANSWER_FORM_ENV", "AnswerError", "answer_schema", "check_answer_form",
           "default_answer_form", "parse_answer"]

ANSWER_FORMS = ("edits", "json")
"""`edits`: search/replace blocks for files that exist, whole content for new ones, no code inside JSON (the default:
models write better code outside JSON strings, and a small change costs a small answer). `json`: every file whole
inside `{files: [{path, content}]}`, constrained by the schema where the backend enforces one: for models too small
to follow the edit form (the embedded default) or backends without a grammar that ramble."""


ANSWER_FORM_ENV = "LOCAL_LLM_ANSWER_FORM"
"""The default answer form of the process's sessions (e.g. `claude mcp add ... -e LOCAL_LLM_ANSWER_FORM=json`); an
`answer_form` given to enable or delegate wins."""


def default_answer_form(backend: str) -> str:
    """$LOCAL_LLM_ANSWER_FORM, else by backend: the embedded SmolLM2-135M cannot follow the edit-block form, and with
    the JSON schema as a llama.cpp grammar its answer always parses, so its runs go end to end; every other backend
    gets edits."""
    if env := os.environ.get(ANSWER_FORM_ENV):
        return str(check_answer_form(env.strip(), auto=False, field=ANSWER_FORM_ENV))
    return "json" if backend == "embedded" else "edits"


def check_answer_form(value: object, *, auto: bool = True, field: str = "answer_form") -> str | None:
    """`edits`, `json`, (per call) `auto`, or None for the default; else a clear error naming the field."""
    allowed = (*ANSWER_FORMS, "auto") if auto else ANSWER_FORMS
    if value is None or value in allowed:
        return value  # type: ignore[return-value]
    raise InvalidArgument(field, f"one of {', '.join(allowed)}", value)


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
