"""What an Ollama server honours (by its version) and what a model can do (by `/api/show`): pure rules, read from
Ollama's source (github.com/ollama/ollama; the commits and files are named at each rule).

Go's JSON decoding ignores fields it does not know, so an older server takes `think`, `truncate` and `shift` without
an error and does nothing with them: the version is the only way to know they were honoured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.executor.backends.base import THINK_LEVELS, BackendError, Think

__all__ = [
    "CAPABILITIES_SINCE",
    "LEVELS_ONLY_FAMILIES",
    "OMIT",
    "THINK_SINCE",
    "TRUNCATE_SINCE",
    "ModelTraits",
    "ServerFeatures",
    "is_context_overflow",
    "parse_version",
    "think_value",
]

Version = tuple[int, int, int]

THINK_SINCE: Version = (0, 9, 0)
"""`think` and `message.thinking`: commit 5f57b0ef4 "add thinking support to the api and cli" (#10584), v0.9.0."""
TRUNCATE_SINCE: Version = (0, 12, 6)
"""`truncate` and `shift`: commit 6544e1473 "Reapply add truncate and shift parameters" (#12582), first in v0.12.6
(the first try, #12519 in v0.12.4-rc, was reverted before the release)."""
CAPABILITIES_SINCE: Version = (0, 6, 4)
"""`/api/show` `capabilities`: commit e172f095b "api: return model capabilities from the show endpoint" (#10066)."""

LEVELS_ONLY_FAMILIES = frozenset({"gptoss", "gpt-oss"})
"""Models whose reasoning cannot be turned off: Ollama parses them with harmony (server/routes.go
`shouldUseHarmony`), and docs/capabilities/thinking.mdx says `true`/`false` are ignored for GPT-OSS, which takes only
`low`, `medium` or `high`."""

OMIT = object()
"""`think_value`'s answer when the request should not carry `think` at all."""

_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def parse_version(text: str | None) -> Version | None:
    """`0.12.6`, `0.33.0-rc2` -> (0, 33, 0); a source build reports `0.0.0` (version/version.go), which says nothing
    about what it honours: None, like an unreadable version."""
    match = _VERSION.search(text or "")
    if match is None:
        return None
    version = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    return None if version == (0, 0, 0) else version


@dataclass(frozen=True)
class ServerFeatures:
    version: str | None

    @property
    def _parsed(self) -> Version | None:
        return parse_version(self.version)

    def _since(self, first: Version) -> bool:
        parsed = self._parsed
        return parsed is not None and parsed >= first

    @property
    def honours_truncate(self) -> bool:
        """`truncate: false` makes an overlong prompt an error; an unknown version counts as not honouring it."""
        return self._since(TRUNCATE_SINCE)

    @property
    def honours_think(self) -> bool:
        return self._since(THINK_SINCE)

    def truncation_note(self) -> str | None:
        """Why the engine itself refuses prompts over its estimate, or None where the server refuses them."""
        if self.honours_truncate:
            return None
        known = f"Ollama {self.version}" if self._parsed else f"an Ollama of unknown version ({self.version!r})"
        return (
            f"{known} ignores `truncate: false` (honoured from v{'.'.join(map(str, TRUNCATE_SINCE))}) and would cut "
            "an overlong prompt silently, so the engine refuses a prompt whose conservative estimate does not fit; "
            "upgrade Ollama to let it check the real count"
        )


@dataclass(frozen=True)
class ModelTraits:
    """What `/api/show` says of a model."""

    capabilities: tuple[str, ...] | None
    """None: the server is too old to say (before v0.6.4)."""
    family: str = ""

    @classmethod
    def from_show(cls, shown: Mapping[str, Any]) -> ModelTraits:
        raw = shown.get("capabilities")
        details = shown.get("details") if isinstance(shown.get("details"), Mapping) else {}
        capabilities = tuple(str(c) for c in raw) if isinstance(raw, Sequence) and not isinstance(raw, str) else None
        return cls(capabilities=capabilities, family=str((details or {}).get("family") or ""))

    @property
    def can_think(self) -> bool | None:
        return None if self.capabilities is None else "thinking" in self.capabilities

    @property
    def levels_only(self) -> bool:
        return self.family.lower() in LEVELS_ONLY_FAMILIES


def think_value(want: Think, traits: ModelTraits, *, model: str) -> Any:
    """The request's `think` field for what the run wants (server/routes.go ChatHandler: left out on a model that can
    think, thinking is ON; `think: true` to a model that cannot is a 400)."""
    if isinstance(want, str) and want not in THINK_LEVELS:
        raise BackendError(f"think {want!r} is not a thinking level; "
                           f"use true, false or one of {', '.join(THINK_LEVELS)}")
    if want is False:
        if traits.can_think is False:
            return OMIT  # nothing to turn off
        return "low" if traits.levels_only else False
    if traits.can_think is False:
        raise BackendError(
            f"{model} cannot think (its capabilities: {', '.join(traits.capabilities or ())}); ask without `think`, "
            "or choose a model with the `thinking` capability"
        )
    if traits.levels_only:
        if want is True:
            return "medium"
        return "high" if want == "max" else want  # harmony knows low/medium/high only
    return want


_OVERFLOW = re.compile(r"exceed\w*\s+(the\s+)?(available\s+)?context|context\s+(length|size|window)", re.IGNORECASE)


def is_context_overflow(message: str) -> bool:
    """Ollama's answers to an overlong prompt with `truncate: false`: "the input length exceeds the context length"
    (runner/ollamarunner, v0.12.6 on) and, through its llama-server runner, llama.cpp's "the request exceeds the
    available context size, try increasing it" (llm/llama_server.go passes llama-server's 400 body on)."""
    return bool(_OVERFLOW.search(message))
