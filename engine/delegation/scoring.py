"""Should this task go to the local model? A score in [0, 1] from named, weighted signals.

Pure: the caller passes the task, its files and (optionally) the delegation history; nothing here reads disk.
The seed's signals are kept exactly (base 0.5, threshold 0.6); the extra ones follow the seed's lists of what
delegates well (docs, mechanical refactoring, translation) and what does not (ambiguity, deep project context).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BASE_SCORE",
    "HISTORY_MIN_RUNS",
    "SIGNALS",
    "THRESHOLD",
    "Analysis",
    "Reason",
    "Signal",
    "history_adjustment",
    "score_task",
    "split_identifiers",
]

BASE_SCORE = 0.5
THRESHOLD = 0.6
"""Recommend `delegate` when the score is strictly above this."""
HISTORY_MIN_RUNS = 5
"""Finished delegations of a task type needed before their pass rate moves the score."""
HISTORY_MAX_WEIGHT = 0.2
"""A 100% (0%) pass rate adds (removes) this much; 50% is neutral."""


@dataclass(frozen=True)
class Signal:
    name: str
    weight: float
    words: tuple[str, ...] = ()
    """Regex fragments matched as whole words (case-insensitive) in the task text."""
    task_types: tuple[str, ...] = ()
    """Task types that raise this signal on their own (`test` -> test generation)."""

    def pattern(self) -> re.Pattern[str] | None:
        if not self.words:
            return None
        return re.compile(r"\b(?:" + "|".join(self.words) + r")\b", re.IGNORECASE)


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def split_identifiers(text: str) -> str:
    """`text` with identifiers split into words on camelCase and `_` (`AuthService` -> `Auth Service`, `auth_token`
    -> `auth token`, `JWTToken` -> `JWT Token`), so whole-word signals see the words inside names; `author` stays one
    word."""
    return _CAMEL.sub(" ", text.replace("_", " "))


SIGNALS: tuple[Signal, ...] = (
    # The seed's keyword signals, exactly.
    Signal("pattern-based generation", 0.3, (r"crud", r"boilerplate", r"scaffold(?:s|ed|ing)?")),
    Signal("test generation", 0.2, (r"tests?", r"testing", r"unit[- ]?tests?", r"specs?"), ("test",)),
    Signal("architecture decision", -0.4, (r"design(?:s|ing|ed)?", r"architect(?:s|ure|ures|ural)?")),
    Signal(
        "security-related",
        -0.25,
        (
            r"auth", r"authn", r"authz", r"oauth2?", r"authenticat(?:e|es|ed|ion|ing)",
            r"authori[sz](?:e|es|ed|ation|ing)", r"security", r"secure", r"encrypt(?:s|ed|ion|ing)?",
            r"decrypt(?:s|ed|ion|ing)?", r"crypto(?:graphy|graphic)?", r"passwords?", r"credentials?", r"jwt",
        ),
    ),
    # Implied by the seed's lists.
    Signal(
        "documentation",
        0.2,
        (r"docstrings?", r"documentation", r"document(?:s|ing)?", r"docs", r"jsdoc", r"comments?", r"readme"),
        ("docs",),
    ),
    Signal(
        "mechanical refactoring",
        0.15,
        (r"renam(?:e|es|ed|ing)", r"refactor(?:s|ed|ing)?", r"reformat(?:s|ted|ting)?", r"type hints?",
         r"annotations?", r"extract(?:s|ed|ing)?"),
        ("refactor",),
    ),
    Signal(
        "translation between languages",
        0.2,
        (r"translat(?:e|es|ed|ing|ion)", r"port(?:s|ed|ing)?", r"convert(?:s|ed|ing)?", r"rewrite in"),
        ("translate",),
    ),
    Signal(
        "ambiguous requirements",
        -0.2,
        (r"somehow", r"maybe", r"figure out", r"whatever", r"something like", r"not sure", r"best way",
         r"improve", r"better", r"clean ?up", r"optimi[sz]e", r"tbd", r"etc"),
    ),
    Signal(
        "deep project context",
        -0.25,
        (r"entire (?:codebase|project|repo(?:sitory)?)", r"whole (?:codebase|project|repo(?:sitory)?)",
         r"across the (?:codebase|project|repo(?:sitory)?)", r"everywhere", r"all modules", r"legacy",
         r"integrat(?:e|es|ed|ion) with", r"business logic", r"domain logic"),
    ),
)


@dataclass(frozen=True)
class Reason:
    signal: str
    weight: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"signal": self.signal, "weight": self.weight, "detail": self.detail}


@dataclass(frozen=True)
class Analysis:
    score: float
    recommendation: str
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "recommendation": self.recommendation,
            "threshold": THRESHOLD,
            "base": BASE_SCORE,
            "reasons": [r.as_dict() for r in self.reasons],
        }


_COMPILED = tuple((s, s.pattern()) for s in SIGNALS)


def history_adjustment(
    records: Iterable[Mapping[str, Any]], task_type: str, *, min_runs: int = HISTORY_MIN_RUNS
) -> Reason | None:
    """A reason from the verification pass rate of finished delegations of `task_type`, once there are enough."""
    finished = [
        r for r in records
        if r.get("event") == "run" and r.get("task_type") == task_type and r.get("verification_passed") is not None
    ]
    if len(finished) < min_runs:
        return None
    passed = sum(1 for r in finished if r.get("verification_passed") is True)
    rate = passed / len(finished)
    weight = round((rate - 0.5) * 2 * HISTORY_MAX_WEIGHT, 3)
    return Reason(
        "delegation history",
        weight,
        f"{passed} of {len(finished)} finished {task_type!r} delegations passed verification ({rate:.0%})",
    )


def score_task(
    task: str,
    *,
    files: Sequence[str] = (),
    output_files: Sequence[str] = (),
    task_type: str | None = None,
    history: Iterable[Mapping[str, Any]] = (),
) -> Analysis:
    """Score `task`. Output-file signals count `output_files` only: `files` are context, never outputs (with no
    outputs named, neither "single output file" nor "multi-file coordination" applies). Words are matched whole, in the
    task as written and with its identifiers split (`split_identifiers`)."""
    reasons: list[Reason] = []
    split = split_identifiers(task)
    for signal, pattern in _COMPILED:
        match = (pattern.search(task) or pattern.search(split)) if pattern is not None else None
        if match is not None:
            reasons.append(Reason(signal.name, signal.weight, f"matched {match.group(0)!r}"))
        elif task_type and task_type in signal.task_types:
            reasons.append(Reason(signal.name, signal.weight, f"task_type {task_type!r}"))
    outputs = list(output_files)
    if len(outputs) == 1:
        reasons.append(Reason("single output file", 0.2, f"one file: {outputs[0]}"))
    elif len(outputs) > 2:
        reasons.append(Reason("multi-file coordination", -0.3, f"{len(outputs)} files"))
    if task_type:
        adjusted = history_adjustment(history, task_type)
        if adjusted is not None:
            reasons.append(adjusted)
    raw = BASE_SCORE + sum(r.weight for r in reasons)
    score = round(min(1.0, max(0.0, raw)), 3)
    return Analysis(score, "delegate" if score > THRESHOLD else "keep", tuple(reasons))
