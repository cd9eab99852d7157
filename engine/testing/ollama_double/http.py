"""The Ollama double's HTTP side: routes, NDJSON streams and injected faults, on a threading HTTP server."""

from __future__ import annotations

import hashlib
import json
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.testing.ollama_double.behaviour import BadRequest, features_of, fit_prompt, think_mode
from engine.testing.ollama_double.models import (
    Fault,
    canonical,
    parse_keep_alive,
    rfc3339,
    split_pieces,
    utc_now,
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Resets and clients that hang up are part of the script; keep the test output clean.
        pass


class _Aborted(Exception):
    """The scripted fault closed the connection."""


class _Handler(BaseHTTPRequestHandler):
    double: Any
    """The OllamaDouble this server answers for (typed loosely: the double imports this module)."""
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
            if fault is not None and fault.kind == "trickle" and index >= fault.after_chunks:
                while fault.blank:
                    self._pause(fault.seconds)
                    self._chunk("\n")
                self._pause(fault.seconds)
            self._chunk((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _chunk(self, line: str) -> None:
        data = line.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _pause(self, seconds: float) -> None:
        if self.double._stopping.wait(seconds):
            raise _Aborted

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees a connection reset, not a clean end.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _apply_fault(self, path: str) -> Fault | None:
        """Handle a queued fault; returns the fault if the handler must still act on it (reset, malformed)."""
        fault: Fault | None = self.double._take_fault(path)
        if fault is None:
            return None
        if fault.kind == "delay":
            self.double._stopping.wait(fault.seconds)
            return None
        if fault.kind == "hold" and fault.gate is not None:
            if fault.reached is not None:
                fault.reached.set()
            while not fault.gate.wait(0.02):  # short waits, so stop() ends a held request too
                if self.double._stopping.is_set():
                    raise _Aborted
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
        num_ctx = int(options.get("num_ctx") or self.double.default_num_ctx)
        keep_alive = body.get("keep_alive")
        try:
            ka_seconds = parse_keep_alive(keep_alive, parse_keep_alive(self.double.default_keep_alive))
        except (TypeError, ValueError) as exc:
            self._error(400, str(exc))
            return
        stamp = {"model": name, "created_at": rfc3339(utc_now())}
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
            if self._fault is not None and self._fault.kind == "reset":
                self._reset()
            elif self._fault is not None and self._fault.kind == "malformed":
                self._raw(200, b'{"model": "' + name.encode() + b'", "done": tr')
            else:
                self._json(200, done)
            return

        started = time.perf_counter()
        with self.double._lock:
            model = self.double.models[name]
        features = features_of(self.double.version)
        messages = list(body.get("messages") or []) if chat else [{"role": "user", "content": body.get("prompt")}]
        honoured = features.truncate_and_shift
        try:
            thinks = think_mode(body, model=name, capabilities=model.capabilities, family=model.family,
                                version=self.double.version)
            fit = fit_prompt(messages, num_ctx=num_ctx, chars_per_token=model.chars_per_token,
                             truncate=body.get("truncate") is not False or not honoured)
        except BadRequest as exc:
            self._error(400, str(exc))
            return
        load_seconds = self.double._ensure_loaded(name, num_ctx, keep_alive)
        reused = self.double._evaluate(name, fit)
        reply = self.double._take_reply(body)
        thinking = (reply.thinking if reply.thinking is not None else model.thinking_text) if thinks else ""
        thought = split_pieces(thinking) if thinking and thinks == "separate" else []
        content = f"<think>{thinking}</think>\n{reply.text}" if thinks == "inline" else reply.text
        pieces = split_pieces(content)
        # Thinking spends num_predict first; with shift off, generation also stops where the context is full.
        limits = [int(options["num_predict"])] if int(options.get("num_predict") or -1) >= 0 else []
        if honoured and body.get("shift") is False:
            limits.append(max(0, num_ctx - len(fit.tokens)))
        done_reason = reply.done_reason
        if limits and len(thought) + len(pieces) > min(limits):
            room = min(limits)
            thought, pieces = thought[:room], pieces[:max(0, room - len(thought))]
            done_reason = "length"
        prompt_eval_count = reply.prompt_eval_count or max(1, len(fit.tokens) - reused)
        eval_count = reply.eval_count or len(thought) + len(pieces)

        def chunk(text: str, thinking: str = "") -> dict[str, Any]:
            if chat:
                message = {"role": "assistant", "content": text, **({"thinking": thinking} if thinking else {})}
                return {**stamp, "message": message, "done": False}
            return {**stamp, "response": text, **({"thinking": thinking} if thinking else {}), "done": False}

        prompt_ns, eval_ns = 10_000_000 + prompt_eval_count * 100_000, eval_count * 20_000_000
        final: dict[str, Any] = {
            **chunk(""), "done": True, "done_reason": done_reason,
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
                text, thinking_text = "".join(pieces), "".join(thought)
                if chat:
                    whole["message"] = {"role": "assistant", "content": text,
                                        **({"thinking": thinking_text} if thinking_text else {})}
                else:
                    whole["response"] = text
                self._json(200, whole)
        else:
            lines: list[Any] = [chunk("", t) for t in thought] + [chunk(p) for p in pieces]
            if fault is not None and fault.kind == "malformed":
                lines.insert(min(1, len(lines)), '{"model": "' + name + '", "message": {"role": "assis')
            lines.append(final)
            self._stream(lines, fault)


def make_server(double: Any, port: int) -> ThreadingHTTPServer:
    """A server on 127.0.0.1:`port` (0: any free port) whose handler answers from `double`'s state."""
    handler = type("Handler", (_Handler,), {"double": double})
    return _Server(("127.0.0.1", port), handler)
