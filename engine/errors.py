"""Errors a user can act on: each message names what was wrong and how to fix it.

The CLI prints them without a traceback; the MCP adapter turns them into tool errors.
"""

from __future__ import annotations

__all__ = ["InvalidArgument", "UserError"]


class UserError(Exception):
    """Bad input or a state the user can change; the message says what to do."""


class InvalidArgument(UserError):
    def __init__(self, field: str, expected: str, got: object = None) -> None:
        got_text = "" if got is None else f", got {got!r}"[:200]
        super().__init__(f"{field}: expected {expected}{got_text}")
        self.field, self.expected = field, expected

