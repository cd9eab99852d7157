"""How a long action (`delegate`, `batch`, `result`) answers: with a task, when the run ends, or after a bounded wait.

One pure function, in one place, in this order (docs/claude-code.md, "Long calls"):

1. a request that declares the MCP tasks extension gets a task;
2. else the call's own `wait`;
3. else `$LOCAL_LLM_MCP_WAIT_S` (seconds, or `end`);
4. else the client's row in `CLIENT_TABLE` (clientInfo name and minimum version);
5. else the bounded wait, `BOUNDED_WAIT_S`, after which the answer is the run's id and its state so far.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from engine import InvalidArgument

__all__ = [
    "BOUNDED_WAIT_S",
    "CLIENT_TABLE",
    "MAX_WAIT_S",
    "WAIT_ENV",
    "AnswerPlan",
    "ClientId",
    "ClientRule",
    "parse_version",
    "plan_answer",
]

WAIT_ENV = "LOCAL_LLM_MCP_WAIT_S"
BOUNDED_WAIT_S = 40.0
"""For clients that drop a call after about 60 s: answer before that with the run's id, collected with `result`."""
MAX_WAIT_S = 3600.0
"""The largest `wait` the tool's schema accepts; the variable is held to the same bound."""

AnswerKind = Literal["task", "until_end", "bounded"]


@dataclass(frozen=True)
class AnswerPlan:
    kind: AnswerKind
    wait_s: float | None
    """Seconds to wait before answering with the run's state so far; None for `task` and `until_end`."""
    reason: str
    """Which rule applied, in a few words (logged, and handy in tests)."""


@dataclass(frozen=True)
class ClientId:
    """Who is calling, from the `clientInfo` of `initialize` or of a 2026-07-28 request's `_meta`."""

    name: str
    version: str

    @classmethod
    def from_info(cls, info: object) -> ClientId | None:
        """A `clientInfo` object (`{"name": ..., "version": ...}`) or None when it is missing or malformed."""
        if not isinstance(info, Mapping):
            return None
        name, version = info.get("name"), info.get("version")
        if not isinstance(name, str) or not name.strip():
            return None
        return cls(name=name.strip(), version=version.strip() if isinstance(version, str) else "")


def parse_version(text: str) -> tuple[int, ...] | None:
    """`2.1.332` -> (2, 1, 332); a suffix after the numbers (`2.1.332-beta`, `2.1.332 (Claude Code)`) is ignored.
    None when the text does not start with a number: such a client matches no minimum version."""
    found = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(part) for part in found.group(1).split(".")) if found else None


@dataclass(frozen=True)
class ClientRule:
    name: str
    """clientInfo.name, compared without case."""
    min_version: tuple[int, ...]
    kind: Literal["until_end", "bounded"]
    why: str

    def matches(self, client: ClientId) -> bool:
        version = parse_version(client.version)
        return client.name.casefold() == self.name.casefold() and version is not None and \
            _padded(version, len(self.min_version)) >= self.min_version


def _padded(version: tuple[int, ...], length: int) -> tuple[int, ...]:
    # `2.2` is at least `2.1.212`: compare as (2, 2, 0).
    return version + (0,) * (length - len(version))


CLIENT_TABLE: tuple[ClientRule, ...] = (
    ClientRule(
        name="claude-code", min_version=(2, 1, 212), kind="until_end",
        why="Claude Code 2.1.212+ moves a call past 2 minutes to the background and tells Claude when it ends",
    ),
)
"""Clients whose default differs from the bounded wait. Claude Code names itself `claude-code` in clientInfo (seen
with 2.1.332 on 2026-12-05, docs/claude-code.md)."""


def _env_plan(raw: str) -> AnswerPlan | None:
    text = raw.strip()
    if not text:
        return None
    if text.casefold() == "end":
        return AnswerPlan("until_end", None, f"${WAIT_ENV}=end")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= MAX_WAIT_S:  # `not <=` also refuses NaN and infinity
        raise InvalidArgument(
            f"${WAIT_ENV}", f"seconds from 0 to {MAX_WAIT_S:g}, or `end` to answer when the run ends; unset it for "
            "the client's default", raw,
        )
    return AnswerPlan("bounded", value, f"${WAIT_ENV}")


def plan_answer(
    *, declares_tasks: bool, explicit_wait: float | None, env_wait: str | None, client: ClientId | None
) -> AnswerPlan:
    """The answer for one long call. `env_wait` is the raw value of `$LOCAL_LLM_MCP_WAIT_S` (None when unset); a
    value that is not seconds in range nor `end` is an error naming the variable, whichever rule applies."""
    from_env = _env_plan(env_wait) if env_wait is not None else None
    if declares_tasks:
        return AnswerPlan("task", None, "the request declares the tasks extension")
    if explicit_wait is not None:
        return AnswerPlan("bounded", float(explicit_wait), "the call's wait")
    if from_env is not None:
        return from_env
    if client is not None:
        for rule in CLIENT_TABLE:
            if rule.matches(client):
                wait = None if rule.kind == "until_end" else BOUNDED_WAIT_S
                return AnswerPlan(rule.kind, wait, f"client {rule.name} >= {'.'.join(map(str, rule.min_version))}")
    return AnswerPlan("bounded", BOUNDED_WAIT_S, "default for other clients")
