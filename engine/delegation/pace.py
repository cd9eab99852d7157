"""Time limits that end: when a generation has waited too long for its first token, or writes too slowly once tokens
flow, its attempt ends with a retryable error instead of waiting on a backend that trickles or stalls.

The backends' own per-read timeouts (Ollama, OpenAI-compatible: LOCAL_LLM_REQUEST_TIMEOUT, 300 s) stay: they end a
connection that sends nothing at all. These bounds are about tokens, so a server that sends a byte now and then (a
keep-alive line, an empty chunk) is caught too, and a stream that stalls after its first tokens ends within one rate
window instead of one read timeout per attempt. They are counted from the moment the generation has its slot on the
backend (waiting in line behind another run is not a stall).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from engine.env import env_bound
from engine.errors import InvalidArgument

__all__ = [
    "DEFAULT_FIRST_TOKEN_S",
    "DEFAULT_MIN_TOKENS_PER_S",
    "DEFAULT_RATE_WINDOW_S",
    "FIRST_TOKEN_ENV",
    "MIN_RATE_ENV",
    "RATE_WINDOW_ENV",
    "Pace",
    "PaceLimits",
]

FIRST_TOKEN_ENV = "LOCAL_LLM_FIRST_TOKEN_S"
MIN_RATE_ENV = "LOCAL_LLM_MIN_TOKENS_PER_S"
RATE_WINDOW_ENV = "LOCAL_LLM_RATE_WINDOW_S"

DEFAULT_FIRST_TOKEN_S = 600.0
"""A cold start on a local GPU: Ollama may take its whole load timeout (OLLAMA_LOAD_TIMEOUT, 5 minutes) to load a
large model from disk, then process a full 16k-token prompt before the first token."""
DEFAULT_MIN_TOKENS_PER_S = 0.5
"""Well under a 33B model partly offloaded to the CPU (1-3 tokens/s), well over a stalled runner's zero."""
DEFAULT_RATE_WINDOW_S = 60.0
"""The rate is measured over this long, so a pause (a long line, a swap) is not a stall."""


@dataclass(frozen=True)
class PaceLimits:
    first_token_s: float = DEFAULT_FIRST_TOKEN_S
    """0: no bound on the time to the first token."""
    min_tokens_per_s: float = DEFAULT_MIN_TOKENS_PER_S
    """0: no bound on the rate."""
    window_s: float = DEFAULT_RATE_WINDOW_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PaceLimits:
        env = os.environ if environ is None else environ
        window = env_bound(env, RATE_WINDOW_ENV, DEFAULT_RATE_WINDOW_S)
        if window == 0:
            raise InvalidArgument(f"${RATE_WINDOW_ENV}", "seconds > 0 (turn the rate bound off with "
                                  f"${MIN_RATE_ENV}=0 instead)", "0")
        return cls(first_token_s=env_bound(env, FIRST_TOKEN_ENV, DEFAULT_FIRST_TOKEN_S),
                   min_tokens_per_s=env_bound(env, MIN_RATE_ENV, DEFAULT_MIN_TOKENS_PER_S), window_s=window)

    @property
    def tick_s(self) -> float:
        """How often the watchdog looks: a tenth of the shortest bound, between 50 ms and 1 s."""
        bounds = [b for b in (self.first_token_s, self.window_s) if b > 0]
        return max(0.05, min([1.0, *(b / 10 for b in bounds)]))


class Pace:
    """Decides from the token count, sampled as time goes, whether a generation has stalled (pure: no clock)."""

    def __init__(self, limits: PaceLimits, started: float) -> None:
        self.limits = limits
        self.started = started
        self.first_token_at: float | None = None
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, now: float, tokens: int) -> str | None:
        """The problem that ends the attempt, or None while the pace is fine."""
        limits = self.limits
        if tokens == 0:
            waited = now - self.started
            if limits.first_token_s and waited >= limits.first_token_s:
                return (f"no first token within {limits.first_token_s:g} s; the backend may be stuck loading or "
                        f"stalled (a slow first load may need more: ${FIRST_TOKEN_ENV}, 0 = no bound)")
            return None
        if self.first_token_at is None:
            self.first_token_at = now
            self._samples.append((now, tokens))
            return None
        self._samples.append((now, tokens))
        # Keep one sample at least a window old: the rate is measured from it.
        while len(self._samples) > 1 and self._samples[1][0] <= now - limits.window_s:
            self._samples.popleft()
        since, base = self._samples[0]
        if not limits.min_tokens_per_s or now - self.first_token_at < limits.window_s or now <= since:
            return None
        rate = (tokens - base) / (now - since)
        if rate < limits.min_tokens_per_s:
            return (f"generation slowed to {rate:.2f} tokens/s over the last {now - since:.0f} s (minimum "
                    f"{limits.min_tokens_per_s:g}: ${MIN_RATE_ENV}, 0 = no bound); the backend stalled or is "
                    "too slow for this model")
        return None
