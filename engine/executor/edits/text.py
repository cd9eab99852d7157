"""A file's text as the edit blocks see it, and the way back to its exact bytes: strict UTF-8, the BOM kept, each
line's own ending kept (LF, CRLF, mixed), and whether the last line ends with one. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.executor.edits.model import NOT_UTF8, EditProblem

__all__ = ["BOM", "FileText", "check_utf8"]

BOM = "\ufeff"
_LINE = re.compile(r"([^\n]*?)(\r\n|\n|$)")


def check_utf8(data: bytes, *, path: str) -> EditProblem | None:
    """None for valid UTF-8; else the refusal, naming the file and the first bad byte."""
    try:
        data.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        return EditProblem(
            NOT_UTF8, f"{path} is not UTF-8 text (byte 0x{bad} at offset {exc.start}): it cannot be edited as text; "
            "leave it out of the outputs or convert it first", path=path)
    return None


@dataclass(frozen=True)
class FileText:
    """`lines` hold no line endings; `endings[i]` is line i's own (`"\\n"`, `"\\r\\n"`, or `""` for a last line
    without one). `newline` is what new lines get: CRLF where the file mostly uses it, else LF."""

    lines: tuple[str, ...]
    endings: tuple[str, ...]
    bom: bool = False

    @classmethod
    def from_bytes(cls, data: bytes) -> FileText:
        """Raises UnicodeDecodeError for bytes that are not UTF-8 (see check_utf8)."""
        return cls.from_text(data.decode("utf-8", errors="strict"))

    @classmethod
    def from_text(cls, text: str) -> FileText:
        bom = text.startswith(BOM)
        text = text[1:] if bom else text
        lines: list[str] = []
        endings: list[str] = []
        for m in _LINE.finditer(text):
            if m.start() == len(text) and not m.group(0):
                break
            lines.append(m.group(1))
            endings.append(m.group(2))
        return cls(tuple(lines), tuple(endings), bom)

    @property
    def newline(self) -> str:
        crlf = sum(1 for e in self.endings if e == "\r\n")
        return "\r\n" if crlf and crlf >= sum(1 for e in self.endings if e == "\n") else "\n"

    @property
    def final_newline(self) -> bool:
        return not self.lines or self.endings[-1] != ""

    def text(self) -> str:
        body = "".join(line + end for line, end in zip(self.lines, self.endings, strict=True))
        return (BOM if self.bom else "") + body

    def encode(self) -> bytes:
        return self.text().encode("utf-8")
