"""Which answer form a delegation gets when nobody chose one: the form that fits the model (issue 22). Pure rules.

The forms (`ANSWER_FORMS`): `edits` (search/replace blocks for files that exist, a new file whole in a fence),
`whole` (every output complete in one fenced block after its path: no schema, no grammar) and `json` (every output
whole inside `{files: [{path, content}]}`, constrained by the schema where the backend enforces one). An edit form
suits a model only if it can follow it (aider's edit-format notes say the same); a small model follows `whole`
best: the embedded SmolLM2-135M passed 5 of 6 trivial files asked for one fenced block, 0 of 6 in the JSON form with
its grammar (it wrote the prompt's placeholder, or digits, as the file).

The rule, first match wins:
1. `answer_form` of the delegate call, then of `enable` (the session's), then $LOCAL_LLM_ANSWER_FORM: as given;
2. the embedded model: `whole` (EMBEDDED_FORM);
3. an Ollama model under SMALL_MODEL_PARAMETERS (from `/api/show`: `details.parameter_size`, else
   `model_info["general.parameter_count"]`): `whole`;
4. a (backend, model) pair with at least UNAPPLIED_LIMIT of its last UNAPPLIED_WINDOW edit answers unapplied (from
   the delegation log): `whole` for a run whose outputs are all under WHOLE_FILE_TOKENS (a larger file costs too
   much to rewrite; it keeps `edits`);
5. otherwise `edits`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import InvalidArgument

__all__ = [
    "ANSWER_FORMS",
    "ANSWER_FORM_ENV",
    "EMBEDDED_FORM",
    "SMALL_MODEL_PARAMETERS",
    "UNAPPLIED_LIMIT",
    "UNAPPLIED_WINDOW",
    "WHOLE_FILE_TOKENS",
    "FormChoice",
    "check_answer_form",
    "choose_form",
    "parameter_count",
    "recent_edit_answers",
]

ANSWER_FORMS = ("edits", "whole", "json")
ANSWER_FORM_ENV = "LOCAL_LLM_ANSWER_FORM"
"""The default answer form of the process's sessions (e.g. `claude mcp add ... -e LOCAL_LLM_ANSWER_FORM=whole`); an
`answer_form` given to enable or delegate wins."""
EMBEDDED_FORM = "whole"
SMALL_MODEL_PARAMETERS = 4_000_000_000
"""N: an Ollama model with fewer parameters gets `whole` (qwen2.5-coder:3b, llama3.2:3b, gemma3:1b, ...)."""
UNAPPLIED_WINDOW = 5
"""M: how many of a (backend, model) pair's most recent edit answers the fallback looks at."""
UNAPPLIED_LIMIT = 3
"""K: unapplied edit answers among the last M that make the pair fall back to `whole`."""
WHOLE_FILE_TOKENS = 2_000
"""T: the fallback rewrites whole only outputs under this many tokens each."""

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMBT]?)\s*", re.IGNORECASE)
_SCALE = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def check_answer_form(value: object, *, auto: bool = True, field: str = "answer_form") -> str | None:
    """`edits`, `whole`, `json`, (per call) `auto`, or None for the default; else a clear error naming the field."""
    allowed = (*ANSWER_FORMS, "auto") if auto else ANSWER_FORMS
    if value is None:
        return None
    if isinstance(value, str) and value in allowed:
        return value
    raise InvalidArgument(field, f"one of {', '.join(allowed)}", value)


@dataclass(frozen=True)
class FormChoice:
    form: str
    rule: str
    """The rule that applied, in words (shown by `status` and kept in the run's `packed` note)."""


def parameter_count(shown: Mapping[str, Any]) -> int | None:
    """A model's parameters from Ollama's `/api/show`: `details.parameter_size` ("135M", "7.6B"), else
    `model_info["general.parameter_count"]`; None when it says neither."""
    details = shown.get("details")
    size = details.get("parameter_size") if isinstance(details, Mapping) else None
    if isinstance(size, str) and (m := _SIZE.fullmatch(size)):
        return int(float(m.group(1)) * _SCALE[m.group(2).upper()])
    info = shown.get("model_info")
    count = info.get("general.parameter_count") if isinstance(info, Mapping) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None


def recent_edit_answers(records: Iterable[Mapping[str, Any]], *, backend: str, model: str) -> list[bool]:
    """Whether each edit-form answer of (backend, model) applied, oldest first, from the delegation log's run lines
    (`edit_answers`)."""
    answers: list[bool] = []
    for record in records:
        if record.get("event") != "run" or record.get("backend") != backend or record.get("model") != model:
            continue
        marks = record.get("edit_answers")
        if isinstance(marks, list):
            answers += [bool(m) for m in marks]
    return answers


def _billions(count: int) -> str:
    return f"{count / 1e9:g} billion"


def choose_form(
    *, backend: str, model: str | None, parameters: int | None = None, session_form: str | None = None,
    recent: Sequence[bool] = (), largest_output_tokens: int | None = None,
) -> FormChoice:
    """The form a run gets with `answer_form` auto (the module's rule). `recent`: whether each of the pair's edit
    answers applied, oldest first; `largest_output_tokens`: the largest output's size (None: not known yet, as in
    `status`, where the fallback's condition is then stated)."""
    if session_form is not None:
        return FormChoice(session_form, f"the session's answer form, set with enable: {session_form}")
    if env := os.environ.get(ANSWER_FORM_ENV, "").strip():
        form = str(check_answer_form(env, auto=False, field=ANSWER_FORM_ENV))
        return FormChoice(form, f"${ANSWER_FORM_ENV}={form}")
    if backend == "embedded":
        return FormChoice(EMBEDDED_FORM, "the embedded model gets whole (it cannot follow edit blocks or a JSON "
                                         "string of code)")
    if backend == "ollama" and parameters is not None and parameters < SMALL_MODEL_PARAMETERS:
        return FormChoice("whole", f"{model} has {_billions(parameters)} parameters, under "
                                   f"{_billions(SMALL_MODEL_PARAMETERS)}: whole")
    window = list(recent)[-UNAPPLIED_WINDOW:]
    unapplied = sum(1 for applied in window if not applied)
    if unapplied >= UNAPPLIED_LIMIT:
        why = (f"{unapplied} of the last {len(window)} edit answers of {model} on {backend} were not applied: whole "
               f"for outputs under {WHOLE_FILE_TOKENS} tokens")
        if largest_output_tokens is None:
            return FormChoice("edits", f"edits; {why}")
        if largest_output_tokens < WHOLE_FILE_TOKENS:
            return FormChoice("whole", why)
        return FormChoice("edits", f"{why}, and an output here is {largest_output_tokens} tokens: edits")
    return FormChoice("edits", "edits: the default for a model that can follow them")
