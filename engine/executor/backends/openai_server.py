"""What an OpenAI-compatible server says about itself: which server it is, its models and their context, how many
requests it runs at once (its slots) and how much context one request may use, and which `response_format` form to
send first.

Each behaviour read here is the server's own, from its public source:

- llama.cpp's `llama-server` (github.com/ggml-org/llama.cpp, tools/server/server-context.cpp): `/v1/models` entries
  say `owned_by: "llamacpp"` and carry `meta.n_ctx_train` (the trained context) and `meta.n_ctx`; `GET /props` answers
  `total_slots` (its `-np`, `params.n_parallel`) and `default_generation_settings.n_ctx`, which is one slot's context
  (`meta.slot_n_ctx`, from `llama_n_ctx_seq`). src/llama-context.cpp divides the context among the slots
  (`n_ctx_seq = n_ctx / n_seq_max`, padded to 256) unless the KV cache is unified, which tools/server/server.cpp turns
  on when `-np` is left to auto (then 4 slots share one pool and each may use all of it). So `/props` already reports
  what one request can hold; it is not divided again here. It takes `response_format` as `json_object` + `schema`
  and as `json_schema` (tools/server/server-common.cpp, oaicompat_chat_params_parse; versions before PR #9527,
  September 2024, refused `json_schema` with a 500).
- vLLM (github.com/vllm-project/vllm, vllm/entrypoints/openai/engine/protocol.py): `ModelCard.owned_by = "vllm"` and
  `max_model_len`, the most one request (prompt + answer) may use. `ResponseFormat` takes `json_schema`; a
  `json_object` with a `schema` beside it is accepted but the schema is ignored (extra fields are only logged), so
  vLLM must get `json_schema`.
- llama-cpp-python's server (github.com/abetlen/llama-cpp-python, llama_cpp/server/app.py and llama_types.py):
  `owned_by: "me"`; `response_format.type` is `text` or `json_object` (with `schema`), `json_schema` is a 422.
- Ollama's `/v1` (github.com/ollama/ollama, openai/openai.go, server/routes.go, docs/api/openai-compatibility.mdx):
  `owned_by` is the model's namespace (`library` for most), `GET /api/version` answers `{"version"}` on the same
  port, `json_schema` becomes its `format`; the OpenAI API has no way to set `num_ctx` or `keep_alive`, so Ollama's
  default context applies (4k, 32k or 256k by VRAM, server/routes.go) and a longer prompt is cut silently.
- LiteLLM's proxy (github.com/BerriAI/litellm, litellm/proxy/proxy_server.py, 1.106.12): `/v1/models` says
  `owned_by: "openai"` for every group and nothing of the servers behind; `GET /v1/model/info` lists each deployment
  (`model_name` = the group clients ask for, `litellm_params.max_parallel_requests`, `model_info.max_input_tokens` /
  `max_tokens` from the config or its model map). A group's context is its smallest deployment's (a request may land
  on any of them); its slots are the deployments' `max_parallel_requests` added up, where every one says it.
- vLLM behind a router: the router's `/v1/models` passes on the servers' `max_model_len` where it keeps the model
  cards; one id listed by several servers holds the smallest of their limits.
- LM Studio answers a `json_object` with 400 `'response_format.type' must be 'json_schema'`
  (github.com/lmstudio-ai/lmstudio-bug-tracker issue 189).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from engine.executor.backends.base import ModelInfo

__all__ = [
    "JSON_OBJECT",
    "JSON_SCHEMA",
    "OLLAMA_DEFAULT_CONTEXT",
    "GroupFacts",
    "ServerFacts",
    "kind_from_models",
    "litellm_groups",
    "model_info",
    "probe_server",
    "response_format",
]

JSON_OBJECT = "json_object"
JSON_SCHEMA = "json_schema"
OLLAMA_DEFAULT_CONTEXT = 4096
"""The smallest context Ollama gives a model when nobody sets num_ctx (server/routes.go: 4k, 32k or 256k by VRAM);
through /v1 nobody can, so this is all the engine may count on."""

_OWNED_BY = {"llamacpp": "llama.cpp", "vllm": "vllm", "me": "llama-cpp-python"}
"""The `owned_by` a server writes on every model it lists, where the server names itself (see the module doc)."""


@dataclass(frozen=True)
class GroupFacts:
    """What a gateway says of one model name it routes (LiteLLM: a model group of one or more deployments)."""

    deployments: int
    context: int | None = None
    """The smallest context any deployment states (None when none states one)."""
    slots: int | None = None
    """The deployments' concurrency added up, where every one states it."""


@dataclass(frozen=True)
class ServerFacts:
    kind: str
    """`llama.cpp`, `vllm`, `ollama`, `llama-cpp-python`, `litellm`, or `unknown`."""
    models: tuple[ModelInfo, ...] = ()
    total_slots: int | None = None
    """llama.cpp: how many requests the server runs at once (its `-np`)."""
    slot_context: int | None = None
    """Tokens one request may use: llama.cpp's per-slot context, vLLM's max_model_len, Ollama's default."""
    version: str | None = None
    groups: Mapping[str, GroupFacts] = field(default_factory=dict)
    """A gateway's model groups by name (LiteLLM's /v1/model/info)."""

    @property
    def schema_styles(self) -> tuple[str, str]:
        """The `response_format` forms in the order to try them: the standard `json_schema` first, except where the
        server is known to refuse it (the other form stays as the fall-back either way)."""
        if self.kind == "llama-cpp-python":
            return (JSON_OBJECT, JSON_SCHEMA)
        return (JSON_SCHEMA, JSON_OBJECT)


def model_info(entry: Mapping[str, Any]) -> ModelInfo:
    """One `/v1/models` entry; its context is llama.cpp's `meta.n_ctx_train`, vLLM's `max_model_len` or LiteLLM's
    `max_input_tokens` (a float there)."""
    meta = _mapping(entry.get("meta"))
    context = _positive(meta.get("n_ctx_train")) or _positive(entry.get("max_model_len")) or \
        _positive(entry.get("max_input_tokens"))
    return ModelInfo(name=str(entry.get("id")), context_length=context, details=dict(entry))


def kind_from_models(models: Sequence[ModelInfo]) -> str | None:
    owners = {str(m.details.get("owned_by") or "") for m in models}
    kinds = {_OWNED_BY[o] for o in owners if o in _OWNED_BY}
    return kinds.pop() if len(kinds) == 1 else None


def response_format(style: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    if style == JSON_OBJECT:
        return {"type": JSON_OBJECT, "schema": dict(schema)}
    return {"type": JSON_SCHEMA, "json_schema": {"name": "answer", "schema": dict(schema), "strict": True}}


async def probe_server(client: httpx.AsyncClient, models: Sequence[ModelInfo]) -> ServerFacts:
    """What the server says beyond its model list: llama.cpp's `/props`, Ollama's `/api/version`. Asked only where the
    model list leaves it open; a route the server lacks just answers 404."""
    kind = kind_from_models(models)
    if kind in (None, "llama.cpp"):
        props = await _get_json(client, "/props")
        if isinstance(props, Mapping) and "total_slots" in props:
            settings = props.get("default_generation_settings")
            per_slot = _positive(settings.get("n_ctx")) if isinstance(settings, Mapping) else None
            if per_slot is None:  # a server too old to say it: /v1/models' meta.n_ctx is the same per-slot value
                per_slot = next((_positive((m.details.get("meta") or {}).get("n_ctx")) for m in models), None)
            return ServerFacts("llama.cpp", tuple(models), _positive(props.get("total_slots")), per_slot)
    if kind is None:
        answer = await _get_json(client, "/api/version")
        if isinstance(answer, Mapping) and isinstance(answer.get("version"), str):
            return ServerFacts("ollama", tuple(models), None, OLLAMA_DEFAULT_CONTEXT, str(answer["version"]))
    if kind == "vllm":
        limits = [m.context_length for m in models if m.context_length]
        return ServerFacts("vllm", tuple(models), None, min(limits) if limits else None)
    if kind is None:
        info = await _get_json(client, "/v1/model/info")
        if isinstance(info, Mapping) and isinstance(info.get("data"), list) and info["data"]:
            return ServerFacts("litellm", tuple(models), groups=litellm_groups(info["data"]))
    return ServerFacts(kind or "unknown", tuple(models))


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def litellm_groups(entries: Sequence[Any]) -> dict[str, GroupFacts]:
    """LiteLLM's `/v1/model/info` deployments gathered by model group: the smallest stated context, the slots added
    up where every deployment states its `max_parallel_requests`."""
    contexts: dict[str, list[int | None]] = {}
    slots: dict[str, list[int | None]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("model_name"), str):
            continue
        info, params = _mapping(entry.get("model_info")), _mapping(entry.get("litellm_params"))
        name = entry["model_name"]
        contexts.setdefault(name, []).append(_positive(info.get("max_input_tokens")) or _positive(
            info.get("max_tokens")))
        slots.setdefault(name, []).append(_positive(params.get("max_parallel_requests")))
    groups = {}
    for name, stated in contexts.items():
        known = [c for c in stated if c]
        parallel = slots[name]
        groups[name] = GroupFacts(len(stated), min(known) if known else None,
                                  sum(p for p in parallel if p) if all(parallel) else None)
    return groups


async def _get_json(client: httpx.AsyncClient, path: str) -> Any:
    try:
        response = await client.get(path, timeout=3.0)
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _positive(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():  # LiteLLM writes token counts as floats (4096.0)
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
