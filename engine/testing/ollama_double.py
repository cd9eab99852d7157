"""A test double of Ollama's HTTP API: a real HTTP server on 127.0.0.1 (ephemeral port) in a background thread.

Ollama itself cannot be installed where the tests run, so this double is built from Ollama's documented API fields:
`docs/api.md`, `api/types.go`, `server/routes.go` and `server/sched.go` in github.com/ollama/ollama at tag
v0.33.0-rc2. It follows them:

- `GET /api/version` -> `{"version"}`; `GET /api/tags` -> `models[{name, model, modified_at, size, digest, details}]`;
  `GET /api/ps` -> `models[{name, model, size, digest, details, expires_at, size_vram, context_length}]`.
- `POST /api/show {model}` -> `modelfile, parameters, template, details, model_info{<arch>.context_length},
  capabilities`; 404 `{"error"}` for an unknown model.
- `POST /api/pull {model, stream}` streams NDJSON statuses (`pulling manifest`, `pulling <digest>` with `total` and
  `completed`, `verifying sha256 digest`, `writing manifest`, `success`); a model not in the double's registry fails the
  way Ollama does: an `{"error": ...}` line in the stream (or HTTP 500 with `stream:false`).
- `POST /api/generate` and `POST /api/chat` stream NDJSON by default (`stream:false`: one object). A request with only
  `model` (generate: no prompt; chat: `messages:[]`) loads the model (`done_reason:"load"`), plus `keep_alive:0` unloads
  it (`done_reason:"unload"`). The final object carries `done_reason`, `total_duration`, `load_duration`,
  `prompt_eval_count`, `prompt_eval_duration`, `eval_count`, `eval_duration` (durations in nanoseconds).
- `keep_alive`: a duration string or seconds; negative keeps the model forever, 0 unloads after the response.
  A request whose `options.num_ctx` differs from the loaded runner's reloads the model (`load_count` goes up);
  no `num_ctx` means the server default (4096).
- An unknown model in generate/chat: 404 `{"error": "model \\"x\\" not found, try pulling it first"}`.

Scripting from tests::

    with OllamaDouble(models=["deepseek-coder:6.7b"], registry=["deepseek-coder:33b"]) as double:
        double.reply("def f(): ...")              # next chat/generate answer (text content)
        double.fault(Fault.http(500))             # or Fault.queue_full(), Fault.reset_mid_stream(),
                                                  # Fault.delay(0.5), Fault.malformed_json()
        ... double.url, double.host, double.requests, double.loaded, double.load_count ...

Without a scripted reply, `double.responder(body)` answers (default: a JSON value that fits the request's `format`
schema, or "ok"). The test suite's fixture `ollama_double` (tests/conftest.py) yields a started double and points
OLLAMA_HOST at it.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "DEFAULT_NUM_CTX",
    "Fault",
    "FakeModel",
    "LoadedModel",
    "OllamaDouble",
    "RecordedRequest",
    "parse_keep_alive",
    "schema_example",
]

DEFAULT_NUM_CTX = 4096
"""What Ollama uses when a request names no num_ctx (v0.6.7+, under 24 GiB of VRAM)."""

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
    """`http`, `reset`, `delay`, `malformed`."""
    status: int = 500
    error: str = "llama runner process has terminated: exit status 2"
    after_chunks: int = 1
    seconds: float = 0.0
    paths: tuple[str, ...] = ("/api/chat", "/api/generate")

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
    def malformed_json(cls, *, paths: Iterable[str] | None = None) -> Fault:
        return cls("malformed", paths=tuple(paths or cls.paths))


@dataclass
class _Reply:
    text: str
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    done_reason: str = "stop"


_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Any, default: float | None = 300.0) -> float | None:
    """Seconds to keep a model loaded; None = forever (any negative value). Go duration strings or numbers."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise ValueError(f"keep_alive: {value!r}")
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


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _pieces(text: str) -> list[str]:
    """Split a reply into token-like pieces so the stream has several chunks."""
    return re.findall(r"\s*\S+|\s+", text) or [""]


class OllamaDouble:
    """A scriptable stand-in for `ollama serve`. Thread-safe; start with `with` or `start()`/`stop()`."""

    def __init__(
        self,
        *,
        models: Iterable[str | FakeModel] | Mapping[str, FakeModel | Mapping[str, Any]] = (),
        registry: Iterable[str | FakeModel] | Mapping[str, FakeModel | Mapping[str, Any]] = (),
        version: str = "0.12.6",
        vram_bytes: int | None = None,
        default_keep_alive: str | float = "5m",
        port: int = 0,
    ) -> None:
        self.version = version
        self.vram_bytes = vram_bytes
        self.default_keep_alive = default_keep_alive
        self.models: dict[str, FakeModel] = _model_table(models)
        self.registry: dict[str, FakeModel] = _model_table(registry)
        self.requests: list[RecordedRequest] = []
        self.loaded: dict[str, LoadedModel] = {}
        self.load_count = 0
        self.loads: list[tuple[str, int]] = []
        """(model, num_ctx) for every load and reload, in order."""
        self.responder: Callable[[Mapping[str, Any]], str] = default_responder
        self._replies: deque[_Reply] = deque()
        self._faults: deque[Fault] = deque()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting --------------------------------------------------------------------------------------------------

    def reply(
        self, text: str, *, prompt_eval_count: int | None = None, eval_count: int | None = None,
        done_reason: str = "stop",
    ) -> None:
        """Queue the content of the next chat/generate answer (FIFO)."""
        with self._lock:
            self._replies.append(_Reply(text, prompt_eval_count, eval_count, done_reason))

    def fault(self, fault: Fault) -> None:
        """Queue a fault for the next request to one of `fault.paths` (FIFO among faults)."""
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        """Drop the faults no request has taken yet."""
        with self._lock:
            self._faults.clear()

    def remove_model(self, name: str) -> FakeModel | None:
        """As if `ollama rm`: generate/chat answer 404 "model not found, try pulling it first" from now on."""
        with self._lock:
            self.loaded.pop(canonical(name), None)
            return self.models.pop(canonical(name), None)

    def add_model(self, model: str | FakeModel, **fields: Any) -> FakeModel:
        fake = model if isinstance(model, FakeModel) else FakeModel(model, **fields)
        with self._lock:
            self.models[fake.name] = fake
        return fake

    def expire(self, name: str) -> None:
        """As if keep_alive ran out: the model leaves memory."""
        with self._lock:
            self.loaded.pop(canonical(name), None)

    def bodies(self, path: str) -> list[Any]:
        """Bodies of the requests received on `path`, in order."""
        with self._lock:
            return [r.body for r in self.requests if r.path == path]

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._replies)

    # -- server -----------------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the double is not started"
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the form OLLAMA_HOST takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> OllamaDouble:
        handler = type("Handler", (_Handler,), {"double": self})
        self._server = _Server(("127.0.0.1", self._port), handler)
        # A short poll interval keeps stop() (and so every test's teardown) fast.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="ollama-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> OllamaDouble:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- the API's behaviour (called from handler threads) ----------------------------------------------------------

    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, body))

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if path in fault.paths:
                    self._faults.remove(fault)
                    return fault
        return None

    def _take_reply(self, body: Mapping[str, Any]) -> _Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        return _Reply(self.responder(body))

    def _expire_old(self) -> None:
        now = _now()
        with self._lock:
            for name in [n for n, m in self.loaded.items() if m.expires_at <= now]:
                del self.loaded[name]

    def _ensure_loaded(self, name: str, num_ctx: int, keep_alive: Any) -> float:
        """Load (or reload on a num_ctx change) and refresh the expiry; returns the load duration in seconds."""
        seconds = parse_keep_alive(keep_alive, parse_keep_alive(self.default_keep_alive))
        self._expire_old()
        with self._lock:
            current = self.loaded.get(name)
            load_seconds = 0.0
            if current is None or current.num_ctx != num_ctx:
                self.load_count += 1
                self.loads.append((name, num_ctx))
                load_seconds = 0.25
            expires = _now() + (FOREVER if seconds is None else timedelta(seconds=seconds))
            self.loaded[name] = LoadedModel(name, num_ctx, seconds, expires)
        return load_seconds

    def _unload(self, name: str) -> None:
        with self._lock:
            self.loaded.pop(name, None)

    def ps(self) -> dict[str, Any]:
        self._expire_old()
        with self._lock:
            out = []
            for loaded in self.loaded.values():
                model = self.models.get(loaded.name)
                if model is None:
                    continue
                size_vram = model.size if self.vram_bytes is None else min(model.size, self.vram_bytes)
                out.append({
                    "name": model.name, "model": model.name, "size": model.size, "digest": model.digest,
                    "details": model.details(), "expires_at": _rfc3339(loaded.expires_at),
                    "size_vram": size_vram, "context_length": loaded.num_ctx,
                })
        return {"models": out}

    def tags(self) -> dict[str, Any]:
        with self._lock:
            return {"models": [
                {"name": m.name, "model": m.name, "modified_at": "2026-11-20T10:00:00.000000Z", "size": m.size,
                 "digest": m.digest, "details": m.details()}
                for m in self.models.values()
            ]}

    def show(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            model = self.models.get(name)
        if model is None:
            return None
        arch = model.family
        return {
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {model.name}\n",
            "parameters": 'stop                           "<|EOT|>"',
            "template": "{{ .System }}\n### Instruction:\n{{ .Prompt }}\n### Response:\n",
            "details": model.details(),
            "model_info": {
                "general.architecture": arch,
                "general.parameter_count": 6_740_000_000,
                f"{arch}.context_length": model.context_length,
                f"{arch}.embedding_length": 4096,
                f"{arch}.block_count": 32,
            },
            "capabilities": list(model.capabilities),
            "modified_at": "2026-11-20T10:00:00.000000Z",
        }


def _model_table(
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Resets and clients that hang up are part of the script; keep the test output clean.
        pass


class _Aborted(Exception):
    """The scripted fault closed the connection."""


class _Handler(BaseHTTPRequestHandler):
    double: OllamaDouble
    protocol_version = "HTTP/1.1"
    server_version = "ollama-double"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------------

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _raw(self, status: int, data: bytes, content_type: str = "application/json; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message})

    def _stream(self, objects: Iterable[Any], fault: Fault | None = None) -> None:
        """NDJSON in HTTP/1.1 chunks, one object per line, flushed as it goes."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, obj in enumerate(objects):
            if fault is not None and fault.kind == "reset" and index >= fault.after_chunks:
                self._reset()
                raise _Aborted
            line = (obj if isinstance(obj, str) else json.dumps(obj)) + "\n"
            data = line.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees a connection reset, not a clean end.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _apply_fault(self, path: str) -> Fault | None:
        """Handle a queued fault; returns the fault if the handler must still act on it (reset, malformed)."""
        fault = self.double._take_fault(path)
        if fault is None:
            return None
        if fault.kind == "delay":
            self.double._stopping.wait(fault.seconds)
            return None
        if fault.kind == "http":
            self._error(fault.status, fault.error)
            raise _Aborted
        return fault

    # -- routes -----------------------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body() if method == "POST" else None
        self.double._record(method, path, body)
        routes: dict[tuple[str, str], Callable[[Any], None]] = {
            ("GET", "/"): lambda b: self._raw(200, b"Ollama is running", "text/plain; charset=utf-8"),
            ("HEAD", "/"): lambda b: self._raw(200, b"", "text/plain; charset=utf-8"),
            ("GET", "/api/version"): lambda b: self._json(200, {"version": self.double.version}),
            ("GET", "/api/tags"): lambda b: self._json(200, self.double.tags()),
            ("GET", "/api/ps"): lambda b: self._json(200, self.double.ps()),
            ("POST", "/api/show"): self._show,
            ("POST", "/api/pull"): self._pull,
            ("POST", "/api/generate"): lambda b: self._generate(b, chat=False),
            ("POST", "/api/chat"): lambda b: self._generate(b, chat=True),
        }
        handler = routes.get((method, path))
        if handler is None:
            self._raw(404, b"404 page not found", "text/plain")
            return
        try:
            fault = self._apply_fault(path)
            if fault is not None and fault.kind == "malformed" and path not in ("/api/chat", "/api/generate"):
                self._raw(200, b'{"models": [{"name": ')
                return
            self._fault = fault
            handler(body)
        except _Aborted:
            return
        except (BrokenPipeError, ConnectionResetError):
            return

    def _model_name(self, body: Any) -> str | None:
        if not isinstance(body, Mapping):
            return None
        name = body.get("model") or body.get("name")
        return canonical(str(name)) if name else None

    def _show(self, body: Any) -> None:
        name = self._model_name(body)
        if name is None:
            self._error(400, "model is required")
            return
        shown = self.double.show(name)
        if shown is None:
            self._error(404, f"model '{name}' not found")
            return
        self._json(200, shown)

    def _pull(self, body: Any) -> None:
        name = self._model_name(body)
        if name is None:
            self._error(400, "model is required")
            return
        stream = body.get("stream", True) is not False
        with self.double._lock:
            model = self.double.registry.get(name) or self.double.models.get(name)
        if model is None:
            error = "pull model manifest: file does not exist"
            if stream:
                self._stream([{"status": "pulling manifest"}, {"error": error}], self._fault)
            else:
                self._error(500, error)
            return
        layers = [(model.digest, model.size - 4096), (hashlib.sha256(model.digest.encode()).hexdigest(), 4096)]
        statuses: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        for digest, total in layers:
            status = f"pulling {digest[:12]}"
            statuses.append({"status": status, "digest": f"sha256:{digest}", "total": total})
            statuses += [
                {"status": status, "digest": f"sha256:{digest}", "total": total, "completed": total * k // 4}
                for k in range(1, 5)
            ]
        statuses += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]

        def events() -> Iterator[dict[str, Any]]:
            yield from statuses[:-1]
            self.double.add_model(model)  # the model exists once the manifest is written
            yield statuses[-1]

        if stream:
            self._stream(events(), self._fault)
        else:
            for _ in events():
                pass
            self._json(200, {"status": "success"})

    def _generate(self, body: Any, *, chat: bool) -> None:
        if not isinstance(body, Mapping):
            self._error(400, "invalid request body")
            return
        name = self._model_name(body)
        if name is None:
            self._error(400, "model is required")
            return
        with self.double._lock:
            known = name in self.double.models
        if not known:
            self._error(404, f'model "{name}" not found, try pulling it first')
            return
        options = body.get("options") or {}
        num_ctx = int(options.get("num_ctx") or DEFAULT_NUM_CTX)
        keep_alive = body.get("keep_alive")
        try:
            ka_seconds = parse_keep_alive(keep_alive, parse_keep_alive(self.double.default_keep_alive))
        except ValueError as exc:
            self._error(400, str(exc))
            return
        stamp = {"model": name, "created_at": _rfc3339(_now())}
        empty = (not body.get("messages")) if chat else (not body.get("prompt"))
        if empty:
            # Load-only or unload request: one object, whatever `stream` says (server/routes.go).
            if ka_seconds == 0:
                self.double._unload(name)
                reason = "unload"
            else:
                self.double._ensure_loaded(name, num_ctx, keep_alive)
                reason = "load"
            done: dict[str, Any] = {**stamp, "done": True, "done_reason": reason}
            done.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
            self._json(200, done)
            return

        started = time.perf_counter()
        load_seconds = self.double._ensure_loaded(name, num_ctx, keep_alive)
        reply = self.double._take_reply(body)
        pieces = _pieces(reply.text)
        prompt_text = json.dumps(body.get("messages") if chat else body.get("prompt"))
        prompt_eval_count = reply.prompt_eval_count or max(1, len(prompt_text) // 4)
        eval_count = reply.eval_count or len(pieces)

        def chunk(text: str) -> dict[str, Any]:
            if chat:
                return {**stamp, "message": {"role": "assistant", "content": text}, "done": False}
            return {**stamp, "response": text, "done": False}

        prompt_ns, eval_ns = 10_000_000 + prompt_eval_count * 100_000, eval_count * 20_000_000
        final: dict[str, Any] = {
            **chunk(""), "done": True, "done_reason": reply.done_reason,
            "total_duration": int((time.perf_counter() - started + load_seconds) * 1e9) + prompt_ns + eval_ns,
            "load_duration": int(load_seconds * 1e9),
            "prompt_eval_count": prompt_eval_count, "prompt_eval_duration": prompt_ns,
            "eval_count": eval_count, "eval_duration": eval_ns,
        }
        if not chat:
            final["context"] = [1, 2, 3]
        if ka_seconds == 0:
            # Unloaded before the final object goes out: a client that has its answer never sees the model loaded
            # (Ollama unloads right after the response; doing it first keeps tests free of that race).
            self.double._unload(name)
        fault = self._fault
        if body.get("stream", True) is False:
            if fault is not None and fault.kind == "malformed":
                self._raw(200, b'{"model": "' + name.encode() + b'", "message": {"role": "assis')
            elif fault is not None and fault.kind == "reset":
                self._reset()
            else:
                whole = dict(final)
                if chat:
                    whole["message"] = {"role": "assistant", "content": reply.text}
                else:
                    whole["response"] = reply.text
                self._json(200, whole)
        else:
            lines: list[Any] = [chunk(p) for p in pieces]
            if fault is not None and fault.kind == "malformed":
                lines.insert(min(1, len(lines)), '{"model": "' + name + '", "message": {"role": "assis')
            lines.append(final)
            self._stream(lines, fault)

