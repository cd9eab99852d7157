"""The dated table of coder models per VRAM tier, and what a pulled model's `/api/show` capabilities mean: pure
functions, no server."""

from __future__ import annotations

import pytest

from engine.session.gpu import GIB, choose_num_ctx
from engine.session.recommendations import (
    MODELS,
    TABLE_CHECKED,
    TIERS,
    PulledModel,
    candidates,
    capabilities_from_show,
    fits,
    generates_text,
    recommend_model,
    suggested_model,
    tiers_summary,
)


@pytest.fixture(autouse=True)
def no_num_ctx_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_LLM_NUM_CTX", raising=False)


@pytest.mark.parametrize(
    ("vram", "model"),
    [
        (None, None),  # CPU only: the embedded default
        (2 * GIB, None),
        (3 * GIB, "qwen2.5-coder:1.5b"),
        (4 * GIB, "qwen2.5-coder:3b"),
        (6 * GIB, "qwen2.5-coder:3b"),
        (8 * GIB, "qwen2.5-coder:7b"),
        (12 * GIB, "qwen2.5-coder:14b"),
        (16 * GIB, "qwen2.5-coder:14b"),
        (24 * GIB - 12 * 2**20, "qwen3-coder:30b"),  # what NVML reports for a "24 GB" RTX 4090 (24564 MiB)
        (48 * GIB, "qwen3-coder:30b"),
        (80 * GIB, "qwen3-coder:30b"),
    ],
)
def test_the_recommendation_follows_the_tier_of_the_vram(vram: int | None, model: str | None) -> None:
    recommendation = recommend_model(vram)
    assert recommendation.model == model
    assert (TABLE_CHECKED in recommendation.reason) is (model is not None)


def test_a_thinking_model_is_never_a_first_choice_and_every_tier_is_in_the_table() -> None:
    for tier in TIERS:
        assert all(name in MODELS for name in tier.models), tier
        assert not MODELS[tier.models[0]].thinking, tier
    assert any(MODELS[name].thinking for tier in TIERS for name in tier.models)  # they do appear, as alternatives


def test_every_first_choice_fits_at_its_tiers_smallest_vram() -> None:
    for tier in TIERS:
        assert fits(MODELS[tier.models[0]].size_bytes, int(tier.min_vram_gb * 1e9)), tier


def test_tiers_grow_and_the_table_is_dated() -> None:
    minima = [t.min_vram_gb for t in TIERS]
    assert minima == sorted(set(minima))
    assert TABLE_CHECKED == "2026-11-25"


def test_the_summary_lists_every_tier_and_marks_its_thinking_models() -> None:
    summary = tiers_summary()
    assert [row["min_vram_gb"] for row in summary] == [t.min_vram_gb for t in TIERS]
    top = summary[-2]
    assert top["models"][0] == "qwen3-coder:30b" and top["thinking"] == ["gpt-oss:20b"]
    assert "thinking" not in summary[0]


def test_a_suggestion_exists_even_without_a_gpu() -> None:
    assert suggested_model(None) == "qwen2.5-coder:1.5b"
    assert suggested_model(12 * GIB) == "qwen2.5-coder:14b"


def test_capabilities_are_none_when_the_server_does_not_report_them() -> None:
    assert capabilities_from_show({"model_info": {}}) is None  # before v0.6.4
    assert capabilities_from_show({"capabilities": []}) is None  # omitempty: unknown, not "nothing"
    assert capabilities_from_show({"capabilities": ["completion", "tools"]}) == ["completion", "tools"]


def test_only_a_known_list_without_completion_means_the_model_cannot_generate() -> None:
    assert generates_text(None)
    assert generates_text(["completion", "thinking"])
    assert not generates_text(["embedding"])


def test_candidates_say_what_is_pulled_and_the_num_ctx_each_would_get() -> None:
    pulled = {"qwen2.5-coder:14b": PulledModel("qwen2.5-coder:14b", size_bytes=9_000_000_000, context_length=8192,
                                               capabilities=["completion", "tools"])}
    rows = candidates(total_vram=12 * GIB, free_vram=11 * GIB, pulled=pulled)
    assert [r["model"] for r in rows] == list(TIERS[3].models)
    first, second = rows[0], rows[1]
    assert (first["pulled"], first["capabilities"], first["fits"]) == (True, ["completion", "tools"], True)
    # A pulled model's own context (from /api/show) caps its num_ctx; the table's context is used for the others.
    assert first["num_ctx"] == 8192
    assert second["pulled"] is False and "capabilities" not in second
    assert second["num_ctx"] == choose_num_ctx(model_context=MODELS[second["model"]].context_length,
                                               free_vram_bytes=11 * GIB,
                                               model_size_bytes=MODELS[second["model"]].size_bytes)
    assert [r["thinking"] for r in rows] == [False, False, False, True]


def test_without_an_answer_from_ollama_pulled_is_unknown_and_cpu_only_gets_the_smallest_tier() -> None:
    rows = candidates(total_vram=None, free_vram=None, pulled=None)
    assert [r["model"] for r in rows] == list(TIERS[0].models)
    assert all(r["pulled"] is None and r["fits"] is None and r["num_ctx"] <= 8192 for r in rows)
    assert all(r["size_checked"] is False for r in rows)  # the small qwen2.5-coder sizes were not confirmed


def test_the_largest_tier_offers_qwen3_coder_next_which_fits_only_there() -> None:
    rows = candidates(total_vram=64 * GIB, free_vram=60 * GIB, pulled={})
    by_name = {r["model"]: r for r in rows}
    assert by_name["qwen3-coder-next"]["fits"] is True and by_name["qwen3-coder-next"]["pulled"] is False
    assert fits(MODELS["qwen3-coder-next"].size_bytes, 48 * GIB) is False
