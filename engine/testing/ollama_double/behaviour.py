"""What the double's chat does with a request, as today's Ollama does it (github.com/ollama/ollama at v0.33.0-rc2,
commit fb30760; older behaviour by the version that changed it). Pure functions over the request and the model.

- Versions (`features_of`): `think` from v0.9.0 (5f57b0ef4), `truncate`/`shift` from v0.12.6 (6544e1473),
  `capabilities` in /api/show from v0.6.4 (e172f095b). An older server ignores a field it does not know (Go's JSON
  decoding), so its defaults apply whatever the client sent.
- Default num_ctx (`default_num_ctx`): 2048 up to v0.6.6, 4096 from v0.6.7 (44b466e), and from v0.15.5 (0334ffa) by the
  VRAM: >= 47 GiB -> 262144, >= 23 GiB -> 32768, else 4096 (server/routes.go, the thresholds a little under 48/24 GiB
  on purpose); OLLAMA_CONTEXT_LENGTH overrides it (envconfig/config.go).
- Thinking (`think_mode`, server/routes.go ChatHandler): a model with the `thinking` capability thinks when the
  request leaves `think` out; `think: true` (or a level) to a model without it is a 400 `"<model>" does not support
  thinking`; GPT-OSS (harmony) ignores booleans and thinks at a level (docs/capabilities/thinking.mdx). The reasoning
  streams in `message.thinking` before the content and spends `num_predict` like any other token. A server older than
  v0.9.0 streams a thinking model's reasoning inline as `<think>...</think>` in the content.
- Truncation (`fit_prompt`): with `truncate` on (the default), server/prompt.go chatPrompt drops whole messages from
  the front (system messages and the last message kept) until the prompt fits num_ctx, and the runner then cuts the
  prompt's front if the last message alone is too long (llm/llama_server.go, "truncating input prompt"), logging only.
  With `truncate: false` an overlong prompt is a 400 "the input length exceeds the context length"
  (runner/ollamarunner/runner.go errorInputTooLong; routes.go gives the same words for embeddings).
- `prompt_eval_count` counts the prompt after the cut, less the prefix reused from the runner's cache (so a retry with
  the same first messages reports only what is new), at least 1.
- `shift: false`: generation stops with `done_reason: "length"` when the context is full; with `shift` on the runner
  shifts the context and goes on (num_predict still applies).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "THINK_LEVELS",
    "BadRequest",
    "Features",
    "PromptFit",
    "default_num_ctx",
    "features_of",
    "fit_prompt",
    "prompt_tokens",
    "reused_prefix",
    "think_mode",
]

THINK_LEVELS = ("low", "medium", "high", "max")
MESSAGE_TOKENS = 4
"""Role markers the template adds around each message."""
GIB = 1 << 30
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def _parse(version: str) -> tuple[int, int, int]:
    match = _VERSION.search(version)
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else (0, 0, 0)


@dataclass(frozen=True)
class Features:
    think: bool
    truncate_and_shift: bool
    capabilities: bool
    vram_default_ctx: bool
    default_ctx_4k: bool


def features_of(version: str) -> Features:
    v = _parse(version)
    return Features(think=v >= (0, 9, 0), truncate_and_shift=v >= (0, 12, 6), capabilities=v >= (0, 6, 4),
                    vram_default_ctx=v >= (0, 15, 5), default_ctx_4k=v >= (0, 6, 7))


def default_num_ctx(version: str, *, vram_bytes: int | None, context_length_env: int | None) -> int:
    if context_length_env:
        return context_length_env
    features = features_of(version)
    if not features.default_ctx_4k:
        return 2048
    if not features.vram_default_ctx or vram_bytes is None:
        return 4096
    if vram_bytes >= 47 * GIB:
        return 262144
    return 32768 if vram_bytes >= 23 * GIB else 4096


class BadRequest(Exception):
    """A 400 with Ollama's error text."""


def think_mode(body: Mapping[str, Any], *, model: str, capabilities: Sequence[str], family: str,
               version: str) -> str | None:
    """How the model thinks for this request: None (it does not), `separate` (message.thinking) or `inline`
    (`<think>` in the content, a server older than v0.9.0)."""
    can_think = "thinking" in capabilities
    if not features_of(version).think:
        return "inline" if can_think else None
    value = body.get("think")
    if value is not None and not isinstance(value, bool) and value not in THINK_LEVELS:
        # api/types.go ThinkValue.UnmarshalJSON
        raise BadRequest(f'invalid think value: "{value}" (must be "high", "medium", "low", "max", true, or false)')
    if not can_think:
        if value is True or isinstance(value, str):
            raise BadRequest(f'"{model}" does not support thinking')
        return None
    if family.lower() in ("gptoss", "gpt-oss"):
        return "separate"  # booleans are ignored: it always reasons, at a level
    return None if value is False else "separate"


def prompt_tokens(text: str, chars_per_token: float) -> list[str]:
    """The double's tokenizer: fixed-width pieces (a model whose tokenizer is denser than the engine's estimate has a
    small `chars_per_token`)."""
    width = max(1, int(chars_per_token))
    return [text[i:i + width] for i in range(0, len(text), width)]


def _message_tokens(message: Mapping[str, Any], chars_per_token: float) -> list[str]:
    role = str(message.get("role", "user"))
    return [f"<{role}>"] * MESSAGE_TOKENS + prompt_tokens(str(message.get("content") or ""), chars_per_token)


@dataclass(frozen=True)
class PromptFit:
    tokens: list[str]
    """The prompt as evaluated (after any cut)."""
    before: int
    """Its length before the cut."""

    @property
    def cut(self) -> bool:
        return len(self.tokens) < self.before


def fit_prompt(messages: Sequence[Mapping[str, Any]], *, num_ctx: int, chars_per_token: float,
               truncate: bool) -> PromptFit:
    """The prompt the runner evaluates; raises BadRequest where Ollama refuses it."""
    rendered = [_message_tokens(m, chars_per_token) for m in messages]
    whole = [t for r in rendered for t in r]
    if len(whole) <= num_ctx - 1:  # llm/llama_server.go: fullPromptLimit = NumCtx - 1
        return PromptFit(whole, len(whole))
    if not truncate:
        raise BadRequest("the input length exceeds the context length")
    last = len(rendered) - 1
    for start in range(last + 1):  # chatPrompt: drop from the front, keep the system messages and the last one
        kept = [r for i, r in enumerate(rendered[:start]) if messages[i].get("role") == "system"] + rendered[start:]
        tokens = [t for r in kept for t in r]
        if len(tokens) <= num_ctx or start == last:
            break
    if len(tokens) > num_ctx - 1:  # the runner cuts the front of what is left (num_keep 0 here)
        limit = num_ctx - max((num_ctx - 0) // 2, 1)  # contextShiftPromptLimit with num_keep 0
        tokens = tokens[-limit:]
    return PromptFit(tokens, len(whole))


def reused_prefix(cached: Sequence[str], tokens: Sequence[str]) -> int:
    """How many leading tokens the runner's cache already holds (never all: the last is always evaluated)."""
    same = 0
    for a, b in zip(cached, tokens, strict=False):
        if a != b:
            break
        same += 1
    return min(same, max(0, len(tokens) - 1))
