"""Reading the file path an answer gives for a block or a fenced file: alone on its line above (bold, backticks, `#`,
`//`, `--`, a list bullet, `File:`/`Path:`, a trailing colon), a token of a fence's info string, or the one requested
output a sentence names. Pure; shared by the edit-block reader and the fenced-file reader (parse.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PathGuess", "PathReader", "normalize_path", "undecorate", "unwrap"]

_PREFIX = re.compile(r"^(?:#{1,6}(?=[\s`*]|\w)|//+|--|;+|>|[-*+](?=\s)|\d+[.)](?=\s)|<!--|/\*)\s*")
_LABEL = re.compile(r"^(?:file(?:name)?|path)\s*[:=]\s*", re.IGNORECASE)
_PATH_LIKE = re.compile(r"[\w.\-/\\]+")
_EXTENSION = re.compile(r".*\.[A-Za-z][A-Za-z0-9]*")
_WRAPPERS = "*_`'\""
_LONGEST_LINE = 1000
"""A longer line names no path (a runaway answer's line is not worth reading for one)."""


def normalize_path(path: str) -> str:
    """The spelling requested paths are stored under (engine.delegation.paths.canonical_relative): `/` for `\\`,
    no `.` or empty segments. The executor does not import the delegation room; a test holds the two equal."""
    return "/".join(part for part in path.strip().replace("\\", "/").split("/") if part not in ("", "."))


@dataclass(frozen=True)
class PathGuess:
    """A path read from the answer: `path` when it is a requested output, else `raw` (a path that is not)."""

    path: str | None = None
    raw: str | None = None
    how: str = ""


class PathReader:
    def __init__(self, outputs: Sequence[str]) -> None:
        self.outputs = tuple(outputs)
        self._by_spelling = {normalize_path(o): o for o in outputs}
        self._by_spelling.update({o: o for o in outputs})

    def known(self, raw: str) -> bool:
        return raw in self._by_spelling or normalize_path(raw) in self._by_spelling

    def resolve(self, raw: str) -> PathGuess | None:
        found = self._by_spelling.get(raw) or self._by_spelling.get(normalize_path(raw))
        if found is not None:
            return PathGuess(path=found)
        if _PATH_LIKE.fullmatch(raw) and ("/" in raw or "\\" in raw or _EXTENSION.fullmatch(raw)):
            return PathGuess(raw=raw)
        return None

    def from_line(self, line: str, *, prose: bool) -> PathGuess | None:
        """The path a line above a block names: alone on its line (decorations allowed), or with `prose`, the one
        requested output a sentence names."""
        if len(line) > _LONGEST_LINE:
            return None
        text = undecorate(line)
        if text and (not any(c.isspace() for c in text) or self.known(text)):
            return self.resolve(text)
        if not prose:
            return None
        named = {g.path for token in line.split() if (g := self.resolve(unwrap(token))) and g.path}
        named |= {o for o in self.outputs if " " in o and o in line}
        if len(named) == 1:
            return PathGuess(path=named.pop(), how=f"took the path from the sentence {line.strip()!r}")
        return None

    def from_info(self, info: str) -> PathGuess | None:
        """A path in a fence's info string (```` ```python src/a.py ````, ```` ```python:src/a.py ````)."""
        if len(info) > _LONGEST_LINE:
            return None
        unknown = None
        for token in re.split(r"[\s:=,]+", info):
            token = unwrap(token)
            if not token:
                continue
            guess = self.resolve(token)
            if guess is not None and guess.path is not None:
                return guess
            unknown = unknown or guess
        return unknown

    def suggest(self, raw: str) -> str:
        spelled = normalize_path(raw)
        near = [o for o in self.outputs if o.lower() == spelled.lower() or o.rsplit("/", 1)[-1] == spelled.rsplit(
            "/", 1)[-1]]
        return f" (did you mean {near[0]}?)" if near else ""


def unwrap(token: str) -> str:
    """A token without the quotes, bold or backticks around it and the punctuation after it."""
    before = None
    while token != before:
        before = token
        token = token.strip().strip("()[]<>,;")
        token = token[:-1] if token.endswith((":", ".")) and len(token) > 1 else token
        while len(token) > 1 and token[0] == token[-1] and token[0] in _WRAPPERS:
            token = token[1:-1]
    return token


def undecorate(line: str) -> str:
    text = line.strip()
    for _ in range(4):
        before = text
        text = _PREFIX.sub("", text)
        text = _LABEL.sub("", text)
        text = text.removesuffix("-->").removesuffix("*/").strip()
        text = text[:-1].rstrip() if text.endswith(":") else text
        while len(text) > 1 and text[0] == text[-1] and text[0] in _WRAPPERS:
            text = text[1:-1].strip()
        text = text[:-1].rstrip() if text.endswith(":") else text
        if text == before:
            break
    return text
