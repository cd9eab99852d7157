from __future__ import annotations

import re

import pytest

from engine import ANSWER_FORMS, TASK_TYPES
from engine.executor.answers import parse_whole_answer
from engine.executor.prompting import (
    WHOLE_EXAMPLES,
    ContextFile,
    Example,
    OutputSpec,
    attempt_messages,
    base_messages,
    example_messages,
    pack_context,
)


def count(text: str) -> int:
    return len(text) // 4 + 1


def test_retry_messages_repeat_the_first_messages_byte_for_byte_and_add_the_failure() -> None:
    base = base_messages("Add tests", "test", [OutputSpec("t.py", "tests")], [ContextFile("m.py", "def f(): ...")])
    first = attempt_messages(base, [])
    third = attempt_messages(base, [{"answer": "A1", "kind": "verify", "detail": "E1"},
                                    {"answer": "A2", "kind": "answer", "detail": "E2"}])
    assert third[: len(first)] == first
    assert [m.role for m in third] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert third[2].content == "A1" and third[3].content.startswith("verification failed:\nE1")
    assert "E2" in third[5].content


def test_context_that_fits_is_kept_whole_in_the_callers_order() -> None:
    files = [ContextFile("a.py", "a" * 40), ContextFile("b.py", "b" * 40)]
    packed = pack_context(files, budget=1000, count=count)
    assert [f.path for f in packed.included] == ["a.py", "b.py"] and packed.skipped == ()
    assert packed.tokens <= 1000


def test_context_that_does_not_fit_trims_or_leaves_out_the_least_useful_and_reports_it() -> None:
    files = [
        ContextFile("notes.md", "n\n" * 2000),
        ContextFile("user.py", "class User: ...\n" * 20),
        ContextFile("huge.log", "x\n" * 5000),
    ]
    packed = pack_context(files, budget=600, count=count, task="Write tests for user.py")
    kept = {f.path: f for f in packed.included}
    skipped = {s["path"]: s for s in packed.skipped}
    assert "user.py" in kept and kept["user.py"].text == files[1].text  # named in the task: most useful, whole
    assert skipped["notes.md"]["reason"].startswith("trimmed") and "trimmed" in kept["notes.md"].text
    assert skipped["huge.log"]["kept_tokens"] == 0 and "huge.log" not in kept
    assert packed.tokens <= 600


PLACEHOLDER = re.compile(r"<[A-Za-z][A-Za-z _-]*>|\.\.\.|\u2026")
"""`<the complete file content>`, `<one of the requested paths>`, `...`: text a small model copies into the file."""


@pytest.mark.parametrize("form", ANSWER_FORMS)
@pytest.mark.parametrize("task_type", TASK_TYPES)
@pytest.mark.parametrize("exists", [False, True], ids=["new file", "existing file"])
def test_no_prompt_holds_placeholder_text_outside_the_files_own_text(form: str, task_type: str, exists: bool) -> None:
    """Issue 22 point 4: every form x task type x new/existing file, with a context file trimmed to fit, and the
    retry messages of both kinds."""
    own = {"a.py": "def a(x):\n    return x  # ... <the value>\n",
           "ctx.py": "".join(f"v{i} = {i}\n" for i in range(400))}
    context = pack_context([ContextFile("ctx.py", own["ctx.py"])], budget=300, count=count).included
    editing = [ContextFile("a.py", own["a.py"])] if exists else []
    base = base_messages("Change a", task_type, [OutputSpec("a.py", "Python: def a(x)")], context, form=form,
                         editing=editing)
    sent = [*base, *attempt_messages(base, [{"answer": "A1", "kind": "verify", "detail": "E1"},
                                            {"answer": "A2", "kind": "answer", "detail": "E2"}], form=form)[2:]]
    file_lines = {line for text in own.values() for line in text.splitlines()}
    for message in [*sent, *example_messages(form)]:  # the shown exchanges' answers are the engine's text too
        if message.role == "assistant" and message.content in ("A1", "A2"):
            continue  # the model's own text
        ours = "\n".join(line for line in message.content.splitlines() if line not in file_lines)
        assert not PLACEHOLDER.findall(ours), (form, task_type, exists, PLACEHOLDER.findall(ours), ours)


def test_the_whole_form_asks_for_each_file_after_its_path_in_a_fence_and_shows_existing_outputs() -> None:
    system, user = base_messages("Fix a", "generate", [OutputSpec("a.py")], [], form="whole",
                                 editing=[ContextFile("a.py", "x = 1\n")])
    assert "path on a line of its own" in system.content and "fenced code block" in system.content
    assert "x = 1" in user.content and "SEARCH" not in system.content + user.content


@pytest.mark.parametrize("example", WHOLE_EXAMPLES, ids=lambda e: e.task)
def test_each_shown_exchange_of_the_whole_form_is_a_real_answer_that_its_own_reader_reads(example: Example) -> None:
    path = example.output.path
    files = parse_whole_answer(example.answer, [path], ended=True)
    assert list(files) == [path] and files[path].strip() and not PLACEHOLDER.findall(files[path])
    compile(files[path], path, "exec")  # a complete file, not a template


def test_the_whole_form_shows_its_exchanges_in_the_engine_own_user_message_and_the_others_show_none() -> None:
    shown = example_messages("whole")
    assert [m.role for m in shown] == ["user", "assistant"] * len(WHOLE_EXAMPLES)
    changed = next(e for e in WHOLE_EXAMPLES if e.current is not None)
    expected = base_messages(changed.task, "generate", [changed.output], [], form="whole",
                             editing=[ContextFile(changed.output.path, changed.current or "")])[1]
    assert expected in shown  # the existing file shown exactly as a real task shows one
    assert example_messages("edits") == () and example_messages("json") == ()
    system, _ = base_messages("Write add.py", "generate", [OutputSpec("add.py")], [], form="whole")
    assert "```" not in system.content  # the examples are exchanges of their own, not text in the system prompt


def test_the_edit_form_offers_a_plain_fenced_file_for_a_new_file_instead_of_an_empty_search() -> None:
    system, user = base_messages("Write b", "generate", [OutputSpec("b.py")], [], form="edits")
    assert "(new: its path, then the whole file in one fenced block)" in user.content
    assert "leave SEARCH empty" not in system.content and "plain\n  fenced block" in system.content
