"""The default answer form fits the model (issue 22 point 3): the rule's named constants, first match wins."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from engine.delegation.answer_forms import status_form
from engine.delegation.packing import answer_floor
from engine.executor.forms import (
    ANSWER_FORM_ENV,
    ANSWER_FORMS,
    SMALL_MODEL_PARAMETERS,
    UNAPPLIED_LIMIT,
    UNAPPLIED_WINDOW,
    WHOLE_FILE_TOKENS,
    check_answer_form,
    choose_form,
    parameter_count,
    recent_edit_answers,
)
from engine.executor.prompting import feedback_message
from mcp_adapter.cli import delegation as cli_delegation
from mcp_adapter.cli import eval as cli_eval
from mcp_adapter.cli import lifecycle as cli_lifecycle
from mcp_adapter.server import AnswerFormChoice


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ANSWER_FORM_ENV, raising=False)


def test_the_embedded_model_gets_whole_and_says_why() -> None:
    choice = choose_form(backend="embedded", model="SmolLM2-135M")
    assert choice.form == "whole" and "embedded" in choice.rule


def test_an_ollama_model_under_the_size_limit_gets_whole_and_one_at_it_gets_edits() -> None:
    small = choose_form(backend="ollama", model="qwen2.5-coder:3b", parameters=SMALL_MODEL_PARAMETERS - 1)
    large = choose_form(backend="ollama", model="qwen2.5-coder:7b", parameters=SMALL_MODEL_PARAMETERS)
    assert (small.form, large.form) == ("whole", "edits") and "parameters" in small.rule


def test_k_of_the_last_m_edit_answers_unapplied_falls_back_to_whole_for_small_files_only() -> None:
    recent = [True] * 10 + [False] * UNAPPLIED_LIMIT + [True] * (UNAPPLIED_WINDOW - UNAPPLIED_LIMIT)
    small = choose_form(backend="ollama", model="m", recent=recent, largest_output_tokens=WHOLE_FILE_TOKENS - 1)
    large = choose_form(backend="ollama", model="m", recent=recent, largest_output_tokens=WHOLE_FILE_TOKENS)
    assert (small.form, large.form) == ("whole", "edits") and "were not applied" in small.rule
    one_short = [False] * (UNAPPLIED_LIMIT - 1) + [True] * (UNAPPLIED_WINDOW - UNAPPLIED_LIMIT + 1)
    assert choose_form(backend="ollama", model="m", recent=one_short, largest_output_tokens=10).form == "edits"


def test_a_form_set_with_enable_or_the_environment_wins_over_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    assert choose_form(backend="embedded", model="m", session_form="json").form == "json"
    monkeypatch.setenv(ANSWER_FORM_ENV, "edits")
    choice = choose_form(backend="embedded", model="m")
    assert choice.form == "edits" and ANSWER_FORM_ENV in choice.rule


def test_the_parameter_count_comes_from_api_show() -> None:
    assert parameter_count({"details": {"parameter_size": "135M"}}) == 135_000_000
    assert parameter_count({"details": {"parameter_size": "7.6B"}}) == 7_600_000_000
    assert parameter_count({"details": {}, "model_info": {"general.parameter_count": 3_210_000_000}}) == 3_210_000_000
    assert parameter_count({}) is None


def test_edit_answers_are_counted_per_backend_and_model_from_the_log() -> None:
    records = [{"event": "run", "backend": "ollama", "model": "m", "edit_answers": [False, True]},
               {"event": "run", "backend": "openai", "model": "m", "edit_answers": [False]},
               {"event": "analyze"}, {"event": "run", "backend": "ollama", "model": "m", "edit_answers": [False]}]
    assert recent_edit_answers(records, backend="ollama", model="m") == [False, True, False]


def test_status_shows_the_form_a_delegation_gets_and_the_rule_that_applied(tmp_path: Path) -> None:
    log = tmp_path / "delegation-log.jsonl"
    shown = status_form(log, {"state": "loaded", "backend": "embedded", "model": "SmolLM2-135M"})
    assert shown["answer_form"] == "whole" and "embedded" in shown["answer_form_rule"]
    small = status_form(log, {"state": "loaded", "backend": "ollama", "model": "m", "parameters": 1_500_000_000})
    assert small["answer_form"] == "whole" and "1.5 billion" in small["answer_form_rule"]
    assert status_form(log, {"state": "idle", "backend": None}) == {}


def test_whole_is_a_form_everywhere_a_form_is_named() -> None:
    assert "whole" in ANSWER_FORMS and check_answer_form("whole") == "whole"
    assert get_args(AnswerFormChoice) == (*ANSWER_FORMS, "auto")  # the MCP tool's enum
    for command in (cli_delegation, cli_lifecycle, cli_eval):  # the CLI's --answer-form / --form choices
        assert get_args(command.AnswerForm) == ANSWER_FORMS
    assert answer_floor(8192, form="whole", whole_tokens=3000) == answer_floor(8192, form="json", whole_tokens=3000)
    assert "fenced block" in feedback_message("answer", "E", form="whole")
