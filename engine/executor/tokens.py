"""Counting tokens when the backend has no tokenizer at hand."""

from __future__ import annotations

import math

__all__ = ["estimate_tokens"]


def estimate_tokens(text: str) -> int:
    """Conservative (high) token estimate for code and prose: 1 token per 3 characters."""
    return math.ceil(len(text) / 3)
