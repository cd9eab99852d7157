"""The suite exercises the answer form users get (tests/conftest.py): edit blocks for a server backend, whole files for
the embedded model, whatever the shell running pytest has in $LOCAL_LLM_ANSWER_FORM; only a test marked
`answer_form_json` (it scripts whole-file JSON answers) runs its sessions in the JSON form."""

from __future__ import annotations

import os

import pytest

from engine.executor.forms import ANSWER_FORM_ENV, choose_form


def _forms() -> tuple[str, str, str]:
    ollama, openai, embedded = (choose_form(backend=b, model="m").form for b in ("ollama", "openai", "embedded"))
    return ollama, openai, embedded


def test_an_unmarked_test_runs_in_the_products_default_answer_form() -> None:
    assert ANSWER_FORM_ENV not in os.environ
    assert _forms() == ("edits", "edits", "whole")


@pytest.mark.answer_form_json
def test_a_test_marked_answer_form_json_runs_every_backend_in_the_json_form() -> None:
    assert set(_forms()) == {"json"}
