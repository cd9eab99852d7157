"""Thinking text is never the answer: it is split off the content and only counted.

Servers that parse a model's reasoning send it apart (Ollama's `message.thinking` since v0.9.0, llama.cpp's and vLLM's
`reasoning_content`). An older server, or a model whose template the server does not parse, leaves it inline as a
leading `<think>...</think>` block (DeepSeek-R1, Qwen3, QwQ); `split_thinking` takes that block off the content.
"""

from __future__ import annotations

import re

__all__ = ["split_thinking"]

_THINK_BLOCK = re.compile(r"\A\s*<(think|thinking|reasoning)>(.*?)(?:</\1>|\Z)\s*", re.DOTALL)


def split_thinking(text: str) -> tuple[str, str]:
    """(thinking, content): a leading `<think>...</think>` block is thinking; a block never closed (the answer was
    cut while the model was thinking) is all thinking."""
    match = _THINK_BLOCK.match(text)
    if match is None:
        return "", text
    return match.group(2).strip(), text[match.end():]
