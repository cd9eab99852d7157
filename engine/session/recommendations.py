"""Which Ollama model to use for mechanical coding work on this GPU: a dated table of coder models per VRAM tier, and
what `/api/show` says a pulled model can do (its `capabilities`).

The table, checked on 2026-11-25. Sizes are the download at the default tag (Q4_K_M for the GGUF models, MXFP4 for
gpt-oss) in decimal GB, as ollama.com lists them; contexts are the trained context `/api/show` reports. Non-thinking
models come first: a delegation wants the code, and a thinking model spends its tokens (and `num_predict`) on
reasoning first. Thinking models are alternatives only, marked `thinking`.

| model                 | size   | context | thinking | what, and where the figures come from                       |
|-----------------------|--------|---------|----------|-------------------------------------------------------------|
| qwen2.5-coder:0.5b    | 0.4 GB | 32K     | no       | size not confirmed on 2026-11-25                            |
| qwen2.5-coder:1.5b    | 1.0 GB | 32K     | no       | size not confirmed on 2026-11-25                            |
| qwen2.5-coder:3b      | 1.9 GB | 32K     | no       | size not confirmed on 2026-11-25                            |
| qwen2.5-coder:7b      | 4.7 GB | 32K     | no       | Q4_K_M GGUF 4.68 GB [2]; 32K on Ollama [3]                   |
| qwen2.5-coder:14b     | 9.0 GB | 32K     | no       | Q4_K_M GGUF 8.99 GB [4]; 32K on Ollama [3]                   |
| qwen2.5-coder:32b     | 20 GB  | 32K     | no       | size not confirmed (~0.6 GB per B at Q4_K_M)                 |
| qwen3-coder:30b       | 19 GB  | 256K    | no       | 30.5B MoE, 3.3B active, non-thinking only [5]; size not      |
|                       |        |         |          | confirmed (Q4 GGUFs are quoted at 17.8-19 GB)                |
| qwen3-coder-next      | 52 GB  | 256K    | no       | 80B MoE, 3B active [6]; in Ollama's library [1]; size not    |
|                       |        |         |          | confirmed (80B at ~4.8 bits a weight)                        |
| devstral-small-2:24b  | 15 GB  | 256K    | no       | Q4_K_M GGUF 14.3 GB plus vision [7]; 256K, no thinking [8]   |
| deepseek-coder-v2:16b | 8.9 GB | 160K    | no       | 16B MoE (2.4B active), 2024; size not confirmed              |
| codestral:22b         | 13 GB  | 32K     | no       | 2024, Mistral non-production licence; size not confirmed     |
| gpt-oss:20b           | 14 GB  | 128K    | yes      | 21B MoE; reasoning effort levels only (not off) [9]; size    |
|                       |        |         |          | not confirmed ([3] says 13 GB; the larger figure is kept)     |
| qwen3:8b / qwen3:14b  | 5.2 / 9.3 GB | 40K | yes (hybrid) | sizes not confirmed                                      |

Left out: deepseek-coder (2023), codellama, starcoder2, granite-code (2024; weaker than qwen2.5-coder at each size),
deepseek-r1 (thinking only). Ollama's own launcher lists qwen2.5-coder as deprecated for agentic tools [1]
(tool calling); delegations use no tools, only generation, where it is still the best small non-thinking coder.

Sources (read 2026-11-25):
[1] github.com/ollama/ollama cmd/launch/models.go, cmd/launch/deprecated_models.go, integration/reg_library_test.go
    (v0.33.0-rc2, 2026-08)
[2] https://huggingface.co/prithivMLmods/Qwen2.5-Coder-7B-GGUF
[3] https://code.crashlabs.io/dave/storkit/src/commit/5923165fcfbe23386b6ba7be6bf2000714b41fee/.story_kit/specs/tech/MODEL_SELECTION.md
    (qwen2.5-coder 7b/14b on Ollama: 4.5 / 9 GB, 32K); https://huggingface.co/Qwen/Qwen2.5-Coder-14B-Instruct (32,768)
[4] https://huggingface.co/second-state/Qwen2.5-Coder-14B-Instruct-GGUF
[5] https://huggingface.co/unsloth/Qwen3-Coder-30B-A3B-Instruct-1M-GGUF (262,144 natively; "non-thinking mode only")
[6] https://openrouter.ai/qwen/qwen3-coder-next-2025-02-03/providers (262,144; exclusively non-thinking)
[7] https://smeltcore.com/recipes/devstral-small-2-24b-on-rtx-4090-local-agentic-coding-via-llama-cpp-openhands-24gb-the-vendor-s-name/
[8] https://huggingface.co/mistralai/Devstral-Small-2-24B-Instruct-2512 ;
    https://developer.mittwald.de/de/docs/v2/platform/aihosting/models/devstral-small-2-24b-instruct-2512
[9] https://developers.openai.com/api/docs/models/gpt-oss-20b (131,072; reasoning effort low/medium/high)

Tiers are by the largest GPU's total VRAM in decimal GB (NVML reports a "24 GB" card as 25.8 GB). A model fits when
its weights plus a KV cache of 4096 tokens (the estimate engine/session/gpu.py uses) fit in that VRAM; the first
choice of each tier fits at the tier's minimum (a test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.executor.backends.ollama import canonical_model
from engine.session.gpu import GB, KV_BYTES_PER_TOKEN, GpuReport, choose_num_ctx

__all__ = [
    "MODELS",
    "TABLE_CHECKED",
    "TIERS",
    "ModelEntry",
    "PulledModel",
    "Recommendation",
    "Tier",
    "candidates",
    "capabilities_from_show",
    "fits",
    "generates_text",
    "recommend_for",
    "recommend_model",
    "suggested_model",
    "tier_for",
    "tiers_summary",
]

TABLE_CHECKED = "2026-11-25"
FIT_TOKENS = 4096
"""The least context a fitting model must leave room for (choose_num_ctx's floor is 2048; 4096 holds a small task)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    size_gb: float
    """The download at the default tag, as ollama.com lists it."""
    context_length: int
    """The trained context (what `/api/show` reports as `<arch>.context_length`)."""
    what: str
    thinking: bool = False
    size_checked: bool = True
    """False where the size could not be confirmed on TABLE_CHECKED."""

    @property
    def size_bytes(self) -> int:
        return int(self.size_gb * GB)


def _entries(*entries: ModelEntry) -> dict[str, ModelEntry]:
    return {e.name: e for e in entries}


MODELS: dict[str, ModelEntry] = _entries(
    ModelEntry("qwen2.5-coder:0.5b", 0.4, 32768, "Qwen2.5-Coder 0.5B", size_checked=False),
    ModelEntry("qwen2.5-coder:1.5b", 1.0, 32768, "Qwen2.5-Coder 1.5B", size_checked=False),
    ModelEntry("qwen2.5-coder:3b", 1.9, 32768, "Qwen2.5-Coder 3B", size_checked=False),
    ModelEntry("qwen2.5-coder:7b", 4.7, 32768, "Qwen2.5-Coder 7B"),
    ModelEntry("qwen2.5-coder:14b", 9.0, 32768, "Qwen2.5-Coder 14B"),
    ModelEntry("qwen2.5-coder:32b", 20.0, 32768, "Qwen2.5-Coder 32B (dense: slower than the 30B MoE)",
               size_checked=False),
    ModelEntry("qwen3-coder:30b", 19.0, 262144, "Qwen3-Coder 30B-A3B (MoE, 3.3B active)", size_checked=False),
    ModelEntry("qwen3-coder-next", 52.0, 262144, "Qwen3-Coder-Next 80B-A3B (MoE, 3B active)", size_checked=False),
    ModelEntry("devstral-small-2:24b", 15.0, 262144, "Devstral Small 2 24B"),
    ModelEntry("deepseek-coder-v2:16b", 8.9, 163840, "DeepSeek-Coder-V2 Lite 16B (MoE)", size_checked=False),
    ModelEntry("codestral:22b", 13.0, 32768, "Codestral 22B (non-production licence)", size_checked=False),
    ModelEntry("gpt-oss:20b", 14.0, 131072, "gpt-oss 20B (reasoning levels only)", thinking=True, size_checked=False),
    ModelEntry("qwen3:8b", 5.2, 40960, "Qwen3 8B (hybrid thinking)", thinking=True, size_checked=False),
    ModelEntry("qwen3:14b", 9.3, 40960, "Qwen3 14B (hybrid thinking)", thinking=True, size_checked=False),
)


@dataclass(frozen=True)
class Tier:
    min_vram_gb: float
    models: tuple[str, ...]
    """The first choice, then the alternatives (thinking ones last)."""


TIERS: tuple[Tier, ...] = (
    Tier(3, ("qwen2.5-coder:1.5b", "qwen2.5-coder:0.5b")),
    Tier(4, ("qwen2.5-coder:3b", "qwen2.5-coder:1.5b")),
    # 6 GB cards stay on the 3b: the 7b would leave room for a 4k context only.
    Tier(8, ("qwen2.5-coder:7b", "qwen2.5-coder:3b", "qwen3:8b")),
    Tier(12, ("qwen2.5-coder:14b", "deepseek-coder-v2:16b", "qwen2.5-coder:7b", "qwen3:14b")),
    # 16 GB: a 24B model would leave a 4k context; the 14b keeps the full 16k and codestral is no stronger.
    Tier(16, ("qwen2.5-coder:14b", "codestral:22b", "deepseek-coder-v2:16b", "gpt-oss:20b")),
    Tier(24, ("qwen3-coder:30b", "devstral-small-2:24b", "qwen2.5-coder:32b", "gpt-oss:20b")),
    Tier(64, ("qwen3-coder:30b", "qwen3-coder-next", "devstral-small-2:24b", "qwen2.5-coder:32b")),
)


@dataclass(frozen=True)
class Recommendation:
    model: str | None
    reason: str


def tier_for(vram_bytes: int | None) -> Tier | None:
    """The highest tier this much VRAM reaches; None on CPU only or under the smallest tier."""
    if vram_bytes is None:
        return None
    return next((t for t in reversed(TIERS) if vram_bytes / GB >= t.min_vram_gb), None)


def recommend_model(vram_bytes: int | None, *, memory: str = "VRAM") -> Recommendation:
    """The first choice of the tier for the largest GPU's memory; None (the embedded default) without a GPU or under
    the smallest tier. `memory` names the figure in the reason."""
    if vram_bytes is None:
        return Recommendation(None, "no GPU found: the embedded default (SmolLM2-135M on llama.cpp) runs on the CPU")
    gb = vram_bytes / GB
    tier = tier_for(vram_bytes)
    if tier is None:
        return Recommendation(None, f"{gb:.1f} GB of {memory} is under the {TIERS[0].min_vram_gb:g} GB the smallest "
                                    "recommended model needs; use the embedded default")
    entry = MODELS[tier.models[0]]
    return Recommendation(entry.name, f"{gb:.1f} GB of {memory}: {entry.name} ({entry.what}, a {entry.size_gb:g} "
                                      f"GB download; table of {TABLE_CHECKED})")


def recommend_for(report: GpuReport) -> Recommendation:
    """The recommendation for what a probe found, worded for its source (a remote server's memory unknown: none)."""
    if report.remote and report.largest_total is None:
        return Recommendation(None, f"the Ollama server is another machine and its memory is {report.basis}; enable "
                                    "uses the first pulled model that generates text, or pass --llm MODEL")
    memory = {"metal": "unified memory the GPU may use", "server": "the server's VRAM (at least)",
              "none": "VRAM"}.get(report.source, f"VRAM ({report.source})")
    return recommend_model(report.largest_total, memory=memory)


def suggested_model(vram_bytes: int | None) -> str:
    """A model to name in an error message: the recommendation, else the smallest tier's first choice."""
    return recommend_model(vram_bytes).model or TIERS[0].models[0]


def fits(size_bytes: int, vram_bytes: int | None) -> bool | None:
    """Weights plus a FIT_TOKENS KV cache within the VRAM; None on CPU only (no such limit)."""
    if vram_bytes is None:
        return None
    return size_bytes + FIT_TOKENS * KV_BYTES_PER_TOKEN <= vram_bytes


# -- what a pulled model can do -------------------------------------------------------------------------------------


def capabilities_from_show(shown: Mapping[str, Any]) -> list[str] | None:
    """`/api/show`'s `capabilities` (completion, tools, insert, vision, embedding, thinking, ...), or None when the
    answer has none: servers before v0.6.4 (ollama commit e172f095b) never send it, and newer ones leave it out when
    empty (`omitempty`)."""
    value = shown.get("capabilities")
    if not isinstance(value, list) or not value:
        return None
    return [str(c) for c in value]


def generates_text(capabilities: Sequence[str] | None) -> bool:
    """Unknown capabilities (an older server) are not held against a model; a known list must have `completion`
    (Ollama itself answers 400 "does not support chat" otherwise)."""
    return capabilities is None or "completion" in capabilities


@dataclass(frozen=True)
class PulledModel:
    name: str
    size_bytes: int | None = None
    context_length: int | None = None
    capabilities: list[str] | None = None


def candidates(
    *, total_vram: int | None, free_vram: int | None, pulled: Mapping[str, PulledModel] | None
) -> list[dict[str, Any]]:
    """One small dict per model of this GPU's tier (on CPU only or under the smallest tier: the smallest tier's):
    size, whether it fits, whether it is pulled (None when Ollama did not answer), the num_ctx enable would choose,
    and a pulled model's capabilities. `pulled` is keyed by canonical name (`name:tag`)."""
    tier = tier_for(total_vram) or TIERS[0]
    rows = []
    for name in tier.models:
        entry = MODELS[name]
        have = pulled.get(canonical_model(name)) if pulled is not None else None
        size = (have.size_bytes if have else None) or entry.size_bytes
        context = (have.context_length if have else None) or entry.context_length
        row: dict[str, Any] = {
            "model": name, "size_gb": round(size / GB, 1), "fits": fits(size, total_vram),
            "pulled": None if pulled is None else have is not None,
            "num_ctx": choose_num_ctx(model_context=context, free_vram_bytes=free_vram, model_size_bytes=size),
            "thinking": entry.thinking,
        }
        if not entry.size_checked and not have:
            row["size_checked"] = False
        if have is not None:
            row["capabilities"] = have.capabilities
        rows.append(row)
    return rows


def tiers_summary() -> list[dict[str, Any]]:
    """The whole table, compact: each tier's minimum VRAM, its models (first choice first) and the thinking ones."""
    out = []
    for tier in TIERS:
        row: dict[str, Any] = {"min_vram_gb": tier.min_vram_gb, "models": list(tier.models)}
        if thinking := [m for m in tier.models if MODELS[m].thinking]:
            row["thinking"] = thinking
        out.append(row)
    return out
