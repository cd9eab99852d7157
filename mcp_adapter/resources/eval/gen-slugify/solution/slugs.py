"""URL slugs."""

from __future__ import annotations

import re


def slugify(text: str) -> str:
    """`text` in lower case, each run of characters other than ASCII letters and digits a single '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
