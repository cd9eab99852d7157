"""Small text helpers."""

from __future__ import annotations


def squash_spaces(text: str) -> str:
    """The text with every run of whitespace replaced by one space, and no space at either end."""
    return " ".join(text.split())


def initials(name: str) -> str:
    """The upper-case first letter of each word of `name` ('ada lovelace' -> 'AL')."""
    return "".join(word[0].upper() for word in name.split())
