"""A test double of an OpenAI-compatible server: a real HTTP server on 127.0.0.1 (ephemeral port) in a background
thread that answers as one of the servers the openai backend meets. None of them can run where the tests run (no GPU,
no network for their models), so each behaviour below is the server's own, read in its public source (the files are
named in engine/executor/backends/openai_server.py):

- `llama.cpp` (tools/server/server-context.cpp, server-common.cpp, server-task.cpp; src/llama-context.cpp):
  `GET /v1/models` -> `{"models": [...], "object": "list", "data": [{"id", "owned_by": "llamacpp", "meta": {"n_ctx",
  "n_ctx_train", ...}}]}`; `GET /props` -> `{"default_generation_settings": {"n_ctx": <one slot's context>},
  "total_slots", ...}`, the context per slot being `-c` divided by `-np` and padded to 256 (the whole `-c` with
  `kv_unified`); `POST /tokenize {"content"}` -> `{"tokens": [...]}`; `response_format` `json_object` + `schema` or
  `json_schema` (`legacy=True`: a server from before PR #9527, which answers `json_schema` with a 500); a prompt of
  one slot's context or more -> 400 `exceed_context_size_error`.
- `vllm` (vllm/entrypoints/openai/engine/protocol.py, chat_completion/protocol.py): `owned_by: "vllm"` and
  `max_model_len` on each model; no `/props` (FastAPI's 404 `{"detail": "Not Found"}`); `json_schema` constrains the
  answer, a `json_object` with a `schema` beside it only gives JSON (the schema is an ignored extra field).
- `ollama` (openai/openai.go, middleware/openai.go, server/routes.go): `owned_by` the model's namespace (`library`),
  `GET /api/version` -> `{"version"}`, gin's plain-text 404; `json_object` becomes `format: "json"`, `json_schema` its
  schema.
- `llama-cpp-python` (llama_cpp/server/app.py, llama_types.py): `owned_by: "me"`, `json_schema` -> 422 (pydantic's
  literal error on `response_format.type`), no `usage` in streams, `POST /extras/tokenize/count {"input"}`.
- `litellm` (litellm/proxy/proxy_server.py, 1.106.12, read against a real proxy): `/v1/models` entries
  `owned_by: "openai"` with the group's `max_input_tokens` (a float) where the config states one; `GET /v1/model/info`
  -> `{"data": [{"model_name", "litellm_params": {"model", "api_base", "max_parallel_requests"}, "model_info": {"id",
  "max_input_tokens", "max_tokens"}}]}`, one entry per deployment (`deployments=[(context, parallel), ...]`).
- `lmstudio` (github.com/lmstudio-ai/lmstudio-bug-tracker issues 189 and 618): a `json_object` -> 400
  `{"error": "'response_format.type' must be 'json_schema'"}`; a route it lacks -> 200 `{"error": "Unexpected endpoint
  or method. (GET /props)"}`; its `owned_by` names no server here.

Every server streams `/v1/chat/completions` as server-sent events, ending with a chunk that carries `finish_reason`,
then (with `stream_options.include_usage`, all but llama-cpp-python) a chunk with `choices: []` and `usage`, then
`data: [DONE]`.

Scripting from tests::

    with OpenAIDouble("llama.cpp", n_ctx=8192, total_slots=4) as server:   # 2048 tokens per slot
        server.reply('{"code": "x = 1"}')   # the next answer (FIFO); else an example of the enforced schema, or "ok"
        ... server.url, server.requests, server.bodies("/v1/chat/completions"), server.constrained,
            server.max_in_flight ...
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from engine.testing.ollama_double import RecordedRequest, schema_example
from engine.testing.served import ServedDouble

__all__ = ["KINDS", "OpenAIDouble"]

KINDS = ("llama.cpp", "vllm", "ollama", "llama-cpp-python", "lmstudio", "litellm")
_FORMS = {
    "llama.cpp": {"text", "json_object", "json_schema"},
    "vllm": {"text", "json_object", "json_schema", "structural_tag"},
    "ollama": None,  # any type: an unknown one just gives free text
    "llama-cpp-python": {"text", "json_object"},
    "lmstudio": {"text", "json_schema"},
    "litellm": {"text", "json_object", "json_schema"},
}


def _pad(n: int, to: int = 256) -> int:
    return (n + to - 1) // to * to


def count_tokens(text: str) -> int:
    """The double's tokenizer: one token per 4 characters (what /tokenize and the usage counts agree on)."""
    return max(1, len(text) // 4)


class OpenAIDouble(ServedDouble):
    """A scriptable stand-in for one OpenAI-compatible server. Thread-safe; start with `with` or `start()`/`stop()`."""

    _thread_name = "openai-double"

    def __init__(
        self, kind: str = "llama.cpp", *, model: str | None = None, n_ctx_train: int = 32768, n_ctx: int = 8192,
        total_slots: int = 1, kv_unified: bool = False, max_model_len: int = 16384, version: str = "0.12.6",
        legacy: bool = False, latency_s: float = 0.0, owned_by: str | None = None, port: int = 0,
        deployments: Sequence[tuple[int | None, int | None]] = ((None, None),),
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: one of {', '.join(KINDS)}")
        super().__init__(port=port)
        self.kind, self.n_ctx_train, self.total_slots, self.version = kind, n_ctx_train, total_slots, version
        self.model = model or {"ollama": "qwen2.5-coder:7b", "vllm": "Qwen/Qwen2.5-Coder-7B-Instruct",
                                      "litellm": "coder"}.get(
            kind, "qwen2.5-coder-7b-instruct-q4_k_m.gguf")
        # src/llama-context.cpp: n_ctx padded to 256, then divided among the sequences (slots) unless unified.
        self.slot_context = _pad(n_ctx) if kv_unified else _pad(_pad(n_ctx) // total_slots)
        self.max_model_len = max_model_len
        self.forms = {"text", "json_object"} if legacy else _FORMS[kind]
        self.legacy, self.latency_s = legacy, latency_s
        self.deployments = list(deployments)
        """litellm: each deployment's (max_input_tokens, max_parallel_requests), None where the config says nothing."""
        self.owned_by = owned_by
        """Overrides the `owned_by` the kind writes: a server whose model list reads like another's."""
        self.requests: list[RecordedRequest] = []
        self.constrained: list[Any] = []
        """For each chat request: the schema the server constrained the answer to, `"json"` for JSON only, or None."""
        self.in_flight = self.max_in_flight = 0
        self._replies: deque[str] = deque()
        self._lock = threading.RLock()

    # -- scripting --------------------------------------------------------------------------------------------------

    def reply(self, text: str) -> None:
        """Queue the content of the next chat answer (FIFO)."""
        with self._lock:
            self._replies.append(text)

    def bodies(self, path: str) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests if r.path == path]

    def response_formats(self) -> list[str | None]:
        """The `response_format.type` of each chat request, in order."""
        return [(b.get("response_format") or {}).get("type") for b in self.bodies("/v1/chat/completions")]

    # -- lifetime ---------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "the double is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _make_server(self) -> ThreadingHTTPServer:
        return _Server(("127.0.0.1", self._port), type("Handler", (_Handler,), {"double": self}))

    # -- what the server answers ------------------------------------------------------------------------------------

    def model_list(self) -> dict[str, Any]:
        now = int(time.time())
        entry: dict[str, Any] = {"id": self.model, "object": "model", "created": now}
        if self.kind == "llama.cpp":
            entry |= {"aliases": [self.model], "tags": [], "owned_by": "llamacpp", "meta": {
                "vocab_type": 2, "n_vocab": 151936, "n_ctx": self.slot_context, "n_ctx_train": self.n_ctx_train,
                "n_embd": 3584, "n_params": 7615616512, "size": 4683073536, "ftype": "Q4_K - Medium"}}
        elif self.kind == "vllm":
            entry |= {"owned_by": "vllm", "root": self.model, "parent": None, "max_model_len": self.max_model_len,
                      "permission": [{"id": "modelperm-1", "object": "model_permission", "allow_sampling": True}]}
        elif self.kind == "ollama":
            entry |= {"owned_by": "library"}
        elif self.kind == "llama-cpp-python":
            entry = {"id": self.model, "object": "model", "owned_by": "me", "permissions": []}
        elif self.kind == "litellm":
            entry |= {"owned_by": "openai"}
            stated = [c for c, _ in self.deployments if c]
            if stated:  # one deployment's figure: the engine reads each deployment's in /v1/model/info instead
                entry["max_input_tokens"] = float(stated[0])
        else:
            entry |= {"owned_by": "organization_owner"}
        if self.owned_by is not None:
            entry["owned_by"] = self.owned_by
        if self.kind == "llama.cpp":  # get_res_models also lists the model in Ollama's shape, for Ollama's clients
            return {"models": [{"name": self.model, "model": self.model, "modified_at": "", "size": "",
                                "digest": "", "type": "model", "capabilities": ["completion"]}],
                    "object": "list", "data": [entry]}
        return {"object": "list", "data": [entry]}

    def model_info(self) -> dict[str, Any]:
        return {"data": [{"model_name": self.model, "litellm_params": {
            "model": f"openai/{self.model}", "api_base": f"http://127.0.0.1:{9000 + n}/v1",
            **({"max_parallel_requests": parallel} if parallel else {})}, "model_info": {
            "id": f"deployment-{n}", "max_input_tokens": context, "max_tokens": None}}
            for n, (context, parallel) in enumerate(self.deployments)]}

    def props(self) -> dict[str, Any]:
        return {
            "default_generation_settings": {"params": {"temperature": 0.8, "n_predict": -1},
                                            "n_ctx": self.slot_context},
            "total_slots": self.total_slots, "model_alias": self.model, "model_path": f"/models/{self.model}",
            "modalities": {"vision": False, "video": False, "audio": False}, "endpoint_slots": True,
            "endpoint_props": False, "endpoint_metrics": False, "chat_template": "{{ messages }}",
            "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "build_info": "b6500-0000000",
            "is_sleeping": False,
        }

    def refusal(self, response_format: Any) -> tuple[int, Any] | None:
        """The server's answer to a `response_format` it does not take, or None when it takes it."""
        kind = response_format.get("type") if isinstance(response_format, Mapping) else None
        if kind is None or self.forms is None or kind in self.forms:
            return None
        if self.kind == "llama-cpp-python":
            return 422, {"detail": [{"type": "literal_error", "loc": ["body", "response_format", "type"],
                                     "msg": "Input should be 'text' or 'json_object'", "input": kind,
                                     "ctx": {"expected": "'text' or 'json_object'"}}]}
        if self.kind == "lmstudio":
            return 400, {"error": "'response_format.type' must be 'json_schema'"}
        if self.kind == "vllm":
            return 400, {"error": {"message": f"response_format.type: Input should be 'text', 'json_object' or "
                                              f"'json_schema', got {kind!r}", "type": "BadRequestError",
                                   "param": "response_format", "code": 400}}
        message = f'response_format type must be one of "text" or "json_object", but got: {kind}'
        code, error_type = (500, "server_error") if self.legacy else (400, "invalid_request_error")
        return code, {"error": {"code": code, "message": message, "type": error_type}}

    def enforced(self, response_format: Any) -> Any:
        """What the answer is constrained to: a schema, "json" (any JSON), or None."""
        if not isinstance(response_format, Mapping):
            return None
        kind = response_format.get("type")
        if kind == "json_schema":
            return (response_format.get("json_schema") or {}).get("schema") or "json"
        if kind == "json_object":
            # llama.cpp and llama-cpp-python grammar-constrain to `schema`; vLLM and Ollama ignore it (JSON only).
            schema = response_format.get("schema")
            return schema if schema and self.kind in ("llama.cpp", "llama-cpp-python") else "json"
        return None

    def _next_reply(self, enforced: Any) -> str:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        if isinstance(enforced, Mapping):
            return json.dumps(schema_example(enforced))
        return "{}" if enforced == "json" else "ok"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up are part of the tests


class _Handler(BaseHTTPRequestHandler):
    double: OpenAIDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _not_found(self) -> None:
        match self.double.kind:
            case "ollama":
                self._send(404, "404 page not found", "text/plain")
            case "llama.cpp":
                self._send(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
            case "lmstudio":
                self._send(200, {"error": f"Unexpected endpoint or method. ({self.command} {self.path})"})
            case _:
                self._send(404, {"detail": "Not Found"})

    def do_GET(self) -> None:
        self._route(None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            body = None
        self._route(body)

    def _route(self, body: Any) -> None:
        double, path = self.double, self.path.split("?", 1)[0]
        with double._lock:
            double.requests.append(RecordedRequest(self.command, path, body))
        kind = double.kind
        routes: dict[tuple[str, str], Callable[[], None]] = {
            ("GET", "/v1/models"): lambda: self._send(200, double.model_list()),
            ("POST", "/v1/chat/completions"): lambda: self._chat(body if isinstance(body, dict) else {}),
        }
        if kind == "llama.cpp":
            routes[("GET", "/props")] = lambda: self._send(200, double.props())
            routes[("POST", "/tokenize")] = lambda: self._send(200, {"tokens": list(range(count_tokens(
                str((body or {}).get("content", "")))))})
        if kind == "litellm":
            routes[("GET", "/v1/model/info")] = lambda: self._send(200, double.model_info())
        if kind == "ollama":
            routes[("GET", "/api/version")] = lambda: self._send(200, {"version": double.version})
        if kind == "llama-cpp-python":
            routes[("POST", "/extras/tokenize/count")] = lambda: self._send(200, {"count": count_tokens(
                str((body or {}).get("input", "")))})
        try:
            routes.get((self.command, path), self._not_found)()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _chat(self, body: dict[str, Any]) -> None:
        double = self.double
        if double.kind != "llama.cpp" and body.get("model") != double.model:  # llama.cpp answers to any name
            self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                       "type": "NotFoundError", "param": "model", "code": 404}})
            return
        if (refused := double.refusal(body.get("response_format"))) is not None:
            self._send(*refused)
            return
        messages = body.get("messages") or []
        prompt = sum(count_tokens(str(m.get("content", ""))) + 4 for m in messages if isinstance(m, Mapping))
        if double.kind == "llama.cpp" and prompt >= double.slot_context:
            self._send(400, {"error": {
                "code": 400, "type": "exceed_context_size_error", "n_prompt_tokens": prompt,
                "n_ctx": double.slot_context, "message": f"request ({prompt} tokens) exceeds the available context "
                f"size ({double.slot_context} tokens), try increasing it"}})
            return
        enforced = double.enforced(body.get("response_format"))
        with double._lock:
            double.constrained.append(enforced)
            double.in_flight += 1
            double.max_in_flight = max(double.max_in_flight, double.in_flight)
        try:
            double._stopping.wait(double.latency_s)  # the generation takes a while: requests in flight overlap
            text = double._next_reply(enforced)
        finally:
            with double._lock:
                double.in_flight -= 1
        pieces = [text[i:i + 4] for i in range(0, len(text), 4)] or [""]
        usage = {"prompt_tokens": prompt, "completion_tokens": len(pieces), "total_tokens": prompt + len(pieces)}
        if not body.get("stream"):
            self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": double.model, "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": usage})
            return
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self._stream(self._chunks(pieces, usage if include_usage and double.kind != "llama-cpp-python" else None))

    def _chunks(self, pieces: list[str], usage: dict[str, int] | None) -> Iterable[dict[str, Any]]:
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.double.model}
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": None},
                                    "finish_reason": None}]}
        for piece in pieces:
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if usage is not None:
            yield {**base, "choices": [], "usage": usage}

    def _stream(self, events: Iterable[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in [*(f"data: {json.dumps(e)}\n\n" for e in events), "data: [DONE]\n\n"]:
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
