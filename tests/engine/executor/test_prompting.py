from __future__ import annotations

from engine.executor.prompting import ContextFile, OutputSpec, attempt_messages, base_messages, pack_context


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
