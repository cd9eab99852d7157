"""Numeric settings read from the environment, one rule for all: unset or blank is the default, else a finite
number >= 0, where 0 turns the setting's bound off; anything else is an error that names the variable."""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import InvalidArgument

__all__ = ["env_bound"]


def env_bound(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # `not >=` also refuses NaN
        raise InvalidArgument(f"${name}", "a number >= 0 (0 turns the bound off); unset it for the default", raw)
    return value
