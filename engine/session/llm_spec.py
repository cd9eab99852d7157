"""The `llm` spec of enable: `true`, `MODEL` or `MODEL:persist` (plus `embedded`, the embedded default by name).

Model names contain colons (`deepseek-coder:33b`), so only a final `:persist` is the flag:
`deepseek-coder:33b:persist` is model `deepseek-coder:33b` with persist on. `true` (no model named) means
$LOCAL_LLM_MODEL when it is set (the Claude Code plugin's `model` option), else the backend's default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidArgument

__all__ = ["MODEL_ENV", "LlmSpec", "parse_llm_spec"]

MODEL_ENV = "LOCAL_LLM_MODEL"
_PERSIST = ":persist"
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/@+-]*(:[A-Za-z0-9._+-]+)?$")
_EXPECTED = "`true`, `MODEL` or `MODEL:persist` (e.g. deepseek-coder:6.7b or deepseek-coder:33b:persist)"


@dataclass(frozen=True)
class LlmSpec:
    model: str | None
    """None: the backend's default (the recommended model for Ollama, SmolLM2 for the embedded backend)."""
    persist: bool = False
    """Keep the model loaded after disable and after the session ends."""
    backend: str | None = None
    """Set when the spec names a backend itself (`embedded`)."""


def parse_llm_spec(value: str | bool | None, *, default_model: str | None = None) -> LlmSpec:
    """`default_model`: the model `true` stands for ($LOCAL_LLM_MODEL), checked like a named one."""
    if default_model is not None and default_model.strip():
        named = default_model.strip()
        if not _MODEL_NAME.match(named) or named.lower().endswith(_PERSIST):
            raise InvalidArgument(f"${MODEL_ENV}", "a model name such as qwen2.5-coder:7b; unset it for the "
                                  "recommended model", default_model)
    else:
        named = None
    if value is None or value is True:
        return LlmSpec(named)
    if value is False:
        raise InvalidArgument("llm", f"{_EXPECTED}; to turn the model off use disable", value)
    text = str(value).strip()
    persist = text.lower().endswith(_PERSIST)
    if persist:
        text = text[: -len(_PERSIST)]
    if text.lower() in ("", "true", "yes", "1", "default"):
        return LlmSpec(named, persist)
    if text.lower() == "embedded":
        return LlmSpec(None, persist, backend="embedded")
    if text.lower() in ("false", "no", "0", "off"):
        raise InvalidArgument("llm", f"{_EXPECTED}; to turn the model off use disable", value)
    if not _MODEL_NAME.match(text):
        raise InvalidArgument("llm", _EXPECTED, value)
    return LlmSpec(text, persist)
