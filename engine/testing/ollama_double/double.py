"""`OllamaDouble`: the scriptable state of the fake server (models, loaded runners, replies, faults) and its
lifetime (a real HTTP server on 127.0.0.1 in a background thread)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from http.server import ThreadingHTTPServer
from typing import Any

from engine.testing.ollama_double.behaviour import PromptFit, default_num_ctx, features_of, reused_prefix
from engine.testing.ollama_double.http import make_server
from engine.testing.ollama_double.models import (
    FOREVER,
    FakeModel,
    Fault,
    LoadedModel,
    RecordedRequest,
    Reply,
    canonical,
    default_responder,
    model_table,
    parse_keep_alive,
    rfc3339,
    utc_now,
)
from engine.testing.served import ServedDouble


class OllamaDouble(ServedDouble):
    """A scriptable stand-in for `ollama serve`. Thread-safe; start with `with` or `start()`/`stop()`."""

    _thread_name = "ollama-double"

    def __init__(
        self,
        *,
        models: Iterable[str | FakeModel] | Mapping[str, FakeModel | Mapping[str, Any]] = (),
        registry: Iterable[str | FakeModel] | Mapping[str, FakeModel | Mapping[str, Any]] = (),
        version: str = "0.33.0",
        vram_bytes: int | None = None,
        context_length_env: int | None = None,
        default_keep_alive: str | float = "5m",
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.version = version
        """Today's by default; an older one turns off what it did not have yet (behaviour.features_of)."""
        self.vram_bytes = vram_bytes
        self.context_length_env = context_length_env
        """As OLLAMA_CONTEXT_LENGTH set for the server."""
        self.truncations: list[tuple[str, int, int]] = []
        """(model, tokens before, tokens after) for every prompt the server cut (Ollama only logs it)."""
        self._cache: dict[str, list[str]] = {}
        self.default_keep_alive = default_keep_alive
        self.models: dict[str, FakeModel] = model_table(models)
        self.registry: dict[str, FakeModel] = model_table(registry)
        self.requests: list[RecordedRequest] = []
        self.loaded: dict[str, LoadedModel] = {}
        self.load_count = 0
        self.loads: list[tuple[str, int]] = []
        """(model, num_ctx) for every load and reload, in order."""
        self.responder: Callable[[Mapping[str, Any]], str] = default_responder
        self._replies: deque[Reply] = deque()
        self._faults: deque[Fault] = deque()
        self._lock = threading.RLock()

    # -- scripting --------------------------------------------------------------------------------------------------

    def reply(
        self, text: str, *, prompt_eval_count: int | None = None, eval_count: int | None = None,
        done_reason: str = "stop", thinking: str | None = None,
    ) -> None:
        """Queue the content of the next chat/generate answer (FIFO); `thinking` for a thinking model's reasoning."""
        with self._lock:
            self._replies.append(Reply(text, prompt_eval_count, eval_count, done_reason, thinking))

    @property
    def default_num_ctx(self) -> int:
        """The num_ctx of a request that names none (behaviour.default_num_ctx: by version, VRAM and the env)."""
        return default_num_ctx(self.version, vram_bytes=self.vram_bytes, context_length_env=self.context_length_env)

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

    def _make_server(self) -> ThreadingHTTPServer:
        return make_server(self, self._port)

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

    def _take_reply(self, body: Mapping[str, Any]) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        return Reply(self.responder(body))

    def _expire_old(self) -> None:
        now = utc_now()
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
                self._cache.pop(name, None)  # a new runner starts with an empty cache
                load_seconds = 0.25
            expires = utc_now() + (FOREVER if seconds is None else timedelta(seconds=seconds))
            self.loaded[name] = LoadedModel(name, num_ctx, seconds, expires)
        return load_seconds

    def _unload(self, name: str) -> None:
        with self._lock:
            self.loaded.pop(name, None)
            self._cache.pop(name, None)

    def _evaluate(self, name: str, fit: PromptFit) -> int:
        """Record a cut, put the prompt in the runner's cache; returns the tokens reused from the cache."""
        with self._lock:
            if fit.cut:
                self.truncations.append((name, fit.before, len(fit.tokens)))
            reused = reused_prefix(self._cache.get(name, []), fit.tokens)
            self._cache[name] = list(fit.tokens)
        return reused

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
                    "details": model.details(), "expires_at": rfc3339(loaded.expires_at),
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
            "modified_at": "2026-11-20T10:00:00.000000Z",
        } | _capabilities(model, self.version)


def _capabilities(model: FakeModel, version: str) -> dict[str, Any]:
    """`capabilities` came with v0.6.4 (ollama commit e172f095b, "api: return model capabilities from the show
    endpoint") and is `omitempty`: older servers, and an empty list, leave the key out."""
    shown = model.capabilities and features_of(version).capabilities
    return {"capabilities": list(model.capabilities)} if shown else {}


