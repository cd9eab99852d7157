"""Counting tokens when the backend has no tokenizer at hand."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol

__all__ = ["MESSAGE_OVERHEAD", "estimate_prompt", "estimate_tokens"]

MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds around each message (role markers)."""


class _Message(Protocol):
    @property
    def content(self) -> str: ...


def estimate_tokens(text: str) -> int:
    """Conservative (high) token estimate: 1 token per 3 ASCII characters (code and English prose run 3.5-4.5), and
    1 per other character (CJK, symbols and accented letters are often a token each)."""
    if text.isascii():
        return math.ceil(len(text) / 3)
    wide = sum(1 for c in text if ord(c) > 127)
    return math.ceil((len(text) - wide) / 3) + wide


def estimate_prompt(messages: Iterable[_Message]) -> int:
    """A conservative count of a chat's prompt: its messages plus the template's markers."""
    return sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD for m in messages)
