"""The Ollama double's data: models, loaded runners, recorded requests, scripted faults, and Ollama's value forms
(keep_alive durations, RFC 3339 times, schema-shaped example answers)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_NUM_CTX = 4096
"""What Ollama uses when a request names no num_ctx (v0.6.7+, under 24 GiB of VRAM; behaviour.default_num_ctx has the
whole rule)."""

FOREVER = timedelta(days=365 * 200)


def canonical(name: str) -> str:
    """Ollama names without a tag mean `:latest`."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


@dataclass
class FakeModel:
    name: str
    context_length: int = 16384
    size: int = 3_800_000_000
    family: str = "llama"
    parameter_size: str = "6.7B"
    quantization_level: str = "Q4_0"
    capabilities: tuple[str, ...] = ("completion",)
    chars_per_token: float = 4.0
    """The double's tokenizer: characters per token (code and English run 3.5-4.5; a denser tokenizer, or dense
    text, has fewer)."""
    thinking_text: str = "The task asks for the files listed. I will write each one and answer in the schema."
    """What a model with the `thinking` capability reasons before it answers (when the request lets it)."""

    def __post_init__(self) -> None:
        self.name = canonical(self.name)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }


@dataclass
class LoadedModel:
    name: str
    num_ctx: int
    keep_alive: float | None
    """Seconds as requested; None (or negative) = forever."""
    expires_at: datetime


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: Any
    """The parsed JSON body (None for GET or an empty body; the raw text if it was not JSON)."""


@dataclass(frozen=True)
class Fault:
    """Something to go wrong on the next request to one of `paths`."""

    kind: str
    """`http`, `reset`, `delay`, `malformed`, `trickle`, `hold`."""
    status: int = 500
    error: str = "llama runner process has terminated: exit status 2"
    after_chunks: int = 1
    seconds: float = 0.0
    blank: bool = False
    """trickle: blank lines (bytes but no token) instead of the answer's pieces."""
    paths: tuple[str, ...] = ("/api/chat", "/api/generate")
    gate: threading.Event | None = field(default=None, compare=False)
    """hold: the response waits until this is set (or the double stops)."""
    reached: threading.Event | None = field(default=None, compare=False)
    """hold: set when the held request has arrived."""

    @classmethod
    def hold(cls, gate: threading.Event, *, reached: threading.Event | None = None,
             paths: Iterable[str] | None = None) -> Fault:
        """Answer the next request (normally) only once `gate` is set: a generation that lasts as long as the test
        wants, ended by an event rather than a clock; `reached` tells the test the request is being held."""
        return cls("hold", gate=gate, reached=reached, paths=tuple(paths or cls.paths))

    @classmethod
    def http(cls, status: int = 500, error: str | None = None, *, paths: Iterable[str] | None = None) -> Fault:
        return cls("http", status=status, error=error or cls.error, paths=tuple(paths or cls.paths))

    @classmethod
    def queue_full(cls, *, paths: Iterable[str] | None = None) -> Fault:
        # Ollama's scheduler answers ErrMaxQueue with 503 when OLLAMA_MAX_QUEUE is reached.
        return cls("http", status=503, error="server busy, please try again.  maximum pending requests exceeded",
                   paths=tuple(paths or cls.paths))

    @classmethod
    def reset_mid_stream(cls, *, after_chunks: int = 1, paths: Iterable[str] | None = None) -> Fault:
        return cls("reset", after_chunks=after_chunks, paths=tuple(paths or cls.paths))

    @classmethod
    def delay(cls, seconds: float, *, paths: Iterable[str] | None = None) -> Fault:
        """Wait `seconds` before the first byte of the response (then answer normally)."""
        return cls("delay", seconds=seconds, paths=tuple(paths or cls.paths))

    @classmethod
    def trickle(
        cls, every: float, *, after_chunks: int = 0, blank: bool = False, paths: Iterable[str] | None = None
    ) -> Fault:
        """After `after_chunks` lines at full speed, one line every `every` seconds: the rest of the answer (a model
        too slow to be of use) or, with `blank`, empty lines until the client hangs up (a stalled runner whose
        connection stays alive, so no read timeout ever fires)."""
        return cls("trickle", seconds=every, after_chunks=after_chunks, blank=blank, paths=tuple(paths or cls.paths))

    @classmethod
    def malformed_json(cls, *, paths: Iterable[str] | None = None) -> Fault:
        return cls("malformed", paths=tuple(paths or cls.paths))


@dataclass
class Reply:
    text: str
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    done_reason: str = "stop"
    thinking: str | None = None
    """What a thinking model reasons first; None: the model's thinking_text."""


_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Any, default: float | None = 300.0) -> float | None:
    """Seconds to keep a model loaded; None = forever (any negative value). Go duration strings or numbers."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise TypeError(f"keep_alive: {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            parts = _DURATION.findall(text.lstrip("-"))
            if not parts or "".join(n + u for n, u in parts) != text.lstrip("-"):
                raise ValueError(f"time: invalid duration {text!r}") from None
            seconds = sign * sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    return None if seconds < 0 else seconds


def schema_example(schema: Any) -> Any:
    """A small value that satisfies a JSON schema (the double's default structured answer)."""
    if not isinstance(schema, Mapping):
        return {}
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_example(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {k: schema_example(props[k]) for k in required if k in props}
    if kind == "array":
        return [schema_example(schema.get("items", {}))] * int(schema.get("minItems", 0))
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "null": None}.get(kind, "")


def default_responder(body: Mapping[str, Any]) -> str:
    fmt = body.get("format")
    if isinstance(fmt, Mapping):
        return json.dumps(schema_example(fmt))
    if fmt == "json":
        return "{}"
    return "ok"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utc_now() -> datetime:
    return datetime.now(UTC)


def split_pieces(text: str) -> list[str]:
    """Split a reply into token-like pieces so the stream has several chunks."""
    return re.findall(r"\s*\S+|\s+", text) or [""]


def model_table(
    models: Iterable[str | FakeModel] | Mapping[str, FakeModel | Mapping[str, Any]],
) -> dict[str, FakeModel]:
    table: dict[str, FakeModel] = {}
    if isinstance(models, Mapping):
        for name, spec in models.items():
            fake = spec if isinstance(spec, FakeModel) else FakeModel(name, **dict(spec or {}))
            table[fake.name] = fake
    else:
        for item in models:
            fake = item if isinstance(item, FakeModel) else FakeModel(item)
            table[fake.name] = fake
    return table


