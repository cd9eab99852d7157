"""What the executor model sees and how its answer is read. Pure functions: no IO, no backend.

- `answer_schema`: the JSON schema of the answer, `{files: [{path, content}]}`, with `path` an enum of the requested
  output paths (grammar-constrained backends then cannot invent a path).
- `pack_context`: fit the context files into a token budget; the least useful are trimmed or left out, and reported.
- `base_messages` / `attempt_messages`: attempt N repeats attempt 1's system and user messages byte for byte and adds
  (previous answer, failure) turns, so the backend's prompt cache is reused.
- `parse_answer`: JSON first, then fenced code blocks for backends that ignore the schema; only listed paths pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from engine.backends.base import ChatMessage

__all__ = [
    "AnswerError",
    "ContextFile",
    "OutputSpec",
    "PackedContext",
    "answer_schema",
    "attempt_messages",
    "base_messages",
    "feedback_message",
    "pack_context",
    "parse_answer",
]

TokenCounter = Callable[[str], int]

SYSTEM_PROMPT = (
    "You are a precise code generator. You receive a task, context files and the list of files to write. "
    "Answer with JSON only, exactly in this shape: "
    '{"files": [{"path": "<one of the requested paths>", "content": "<the complete file content>"}]}. '
    "Write every requested file in full. No explanations, no markdown."
)

_TYPE_HINTS = {
    "generate": "Generate the requested code.",
    "test": "Write tests for the code in the context files.",
    "docs": "Write or add documentation (docstrings, comments, markdown) without changing behaviour.",
    "refactor": "Refactor mechanically; keep behaviour identical.",
    "translate": "Translate the code in the context files into the requested language, keeping behaviour.",
}
TRIM_MIN_TOKENS = 128
"""A file is trimmed into the remaining budget only if at least this many tokens of it fit; else it is left out."""


class AnswerError(ValueError):
    """The model's answer cannot be used; the message is sent back to it on the next attempt."""


@dataclass(frozen=True)
class OutputSpec:
    path: str
    description: str = ""


@dataclass(frozen=True)
class ContextFile:
    path: str
    text: str


@dataclass(frozen=True)
class PackedContext:
    included: tuple[ContextFile, ...]
    skipped: tuple[dict[str, Any], ...]
    """`{path, reason, tokens, kept_tokens}` for each file left out or trimmed."""
    tokens: int


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


def _file_block(f: ContextFile) -> str:
    return f"--- {f.path} ---\n{f.text}\n--- end of {f.path} ---"


def _usefulness(f: ContextFile, index: int, task: str, outputs: Sequence[OutputSpec]) -> tuple[int, int]:
    """Higher first: files the task or an output description names, then the caller's order."""
    name = PurePosixPath(f.path).name
    stem = PurePosixPath(f.path).stem
    text = " ".join([task, *(o.description for o in outputs), *(o.path for o in outputs)])
    named = f.path in text or name in text or (len(stem) > 2 and re.search(rf"\b{re.escape(stem)}\b", text) is not None)
    return (1 if named else 0, -index)


def _trim(text: str, budget: int, count: TokenCounter) -> str | None:
    """The longest head of `text` (whole lines) whose block fits `budget` tokens, or None."""
    lines = text.splitlines(keepends=True)
    lo, hi, best = 0, len(lines), None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = "".join(lines[:mid]) + f"\n[... trimmed: {len(lines) - mid} more lines not shown ...]"
        if count(candidate) <= budget:
            best, lo = candidate, mid + 1
        else:
            hi = mid - 1
    return best


def pack_context(
    files: Sequence[ContextFile], *, budget: int, count: TokenCounter, task: str = "",
    outputs: Sequence[OutputSpec] = (),
) -> PackedContext:
    """Keep the most useful files whole while they fit `budget` tokens; trim the first that does not, leave out
    the rest. The caller's order is kept in the prompt."""
    ranked = sorted(range(len(files)), key=lambda i: _usefulness(files[i], i, task, outputs), reverse=True)
    remaining = budget
    kept: dict[int, ContextFile] = {}
    skipped: list[dict[str, Any]] = []
    for i in ranked:
        f = files[i]
        tokens = count(_file_block(f)) + 2
        if tokens <= remaining:
            kept[i] = f
            remaining -= tokens
            continue
        overhead = count(_file_block(ContextFile(f.path, ""))) + 2
        if remaining - overhead >= TRIM_MIN_TOKENS:
            trimmed = _trim(f.text, remaining - overhead, count)
            if trimmed is not None:
                kept[i] = ContextFile(f.path, trimmed)
                used = count(_file_block(kept[i])) + 2
                remaining -= used
                skipped.append({"path": f.path, "reason": "trimmed to fit the context window",
                                "tokens": tokens, "kept_tokens": used})
                continue
        skipped.append({"path": f.path, "reason": "does not fit the context window", "tokens": tokens,
                        "kept_tokens": 0})
    order = {f.path: n for n, f in enumerate(files)}
    skipped.sort(key=lambda s: order.get(s["path"], 0))
    return PackedContext(tuple(kept[i] for i in sorted(kept)), tuple(skipped), budget - remaining)


def user_message(task: str, task_type: str, outputs: Sequence[OutputSpec], context: Sequence[ContextFile]) -> str:
    parts = [f"Task ({task_type}): {task}", _TYPE_HINTS.get(task_type, "")]
    parts.append("Files to write:")
    parts += [f"- {o.path}" + (f": {o.description}" if o.description else "") for o in outputs]
    if context:
        parts.append("Context files:")
        parts += [_file_block(f) for f in context]
    return "\n".join(p for p in parts if p)


def base_messages(
    task: str, task_type: str, outputs: Sequence[OutputSpec], context: Sequence[ContextFile]
) -> tuple[ChatMessage, ChatMessage]:
    return (ChatMessage("system", SYSTEM_PROMPT), ChatMessage("user", user_message(task, task_type, outputs, context)))


def feedback_message(kind: str, detail: str) -> str:
    if kind == "verify":
        return f"verification failed:\n{detail}\nFix the files and answer again with the complete files as JSON."
    return f"your answer could not be used: {detail}\nAnswer again with the complete files as JSON."


def attempt_messages(
    base: Sequence[ChatMessage], history: Sequence[Mapping[str, str]]
) -> list[ChatMessage]:
    """Attempt N: the same first messages, then one (assistant answer, user feedback) pair per failed attempt."""
    messages = list(base)
    for turn in history:
        messages.append(ChatMessage("assistant", turn["answer"]))
        messages.append(ChatMessage("user", feedback_message(turn["kind"], turn["detail"])))
    return messages


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
        normalised = path.strip()
        while normalised.startswith("./"):
            normalised = normalised[2:]
        key = path if path in allowed else normalised
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
