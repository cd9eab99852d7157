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
  no `num_ctx` means the server default (`double.default_num_ctx`).
- Thinking, truncation, capabilities and the default context follow today's server and change with `version`
  (behaviour.py has each rule with its source): a thinking model thinks unless told `think: false`, its reasoning in
  `message.thinking` spending num_predict; `truncate`/`shift` default to true, so an overlong prompt is cut silently
  (recorded in `double.truncations`) unless the request says `truncate: false` (then a 400); `prompt_eval_count`
  counts after the cut and without the cached prefix; `/api/show` has `capabilities` from v0.6.4; the default num_ctx
  depends on the VRAM from v0.15.5.
- An unknown model in generate/chat: 404 `{"error": "model \\"x\\" not found, try pulling it first"}`.

Scripting from tests::

    with OllamaDouble(models=["deepseek-coder:6.7b"], registry=["deepseek-coder:33b"]) as double:
        double.reply("def f(): ...")              # next chat/generate answer (text content)
        double.fault(Fault.http(500))             # or Fault.queue_full(), Fault.reset_mid_stream(),
                                                  # Fault.delay(0.5), Fault.malformed_json(),
                                                  # Fault.trickle(2.0, after_chunks=3, blank=True)
                                                  # Fault.hold(gate, reached=arrived): until gate.set()
        ... double.url, double.host, double.requests, double.loaded, double.load_count ...

Without a scripted reply, `double.responder(body)` answers (default: a JSON value that fits the request's `format`
schema, or "ok"). The test suite's fixture `ollama_double` (tests/conftest.py) yields a started double and points
OLLAMA_HOST at it.
"""

from __future__ import annotations

from engine.testing.ollama_double.double import OllamaDouble
from engine.testing.ollama_double.models import (
    DEFAULT_NUM_CTX,
    FakeModel,
    Fault,
    LoadedModel,
    RecordedRequest,
    parse_keep_alive,
    schema_example,
)

__all__ = [
    "DEFAULT_NUM_CTX",
    "FakeModel",
    "Fault",
    "LoadedModel",
    "OllamaDouble",
    "RecordedRequest",
    "parse_keep_alive",
    "schema_example",
]
