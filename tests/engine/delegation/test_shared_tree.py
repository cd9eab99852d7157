"""The shared-tree rule on real files and a real journal: a run replaces or restores only bytes it started from or
wrote; anything else is a conflict, left alone, with the run's version kept aside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.delegation import shared_tree
from engine.delegation.shared_tree import Action, apply_action, apply_file, read_bases, rollback_action, rollback_file
from engine.store.db import Store
from engine.store.journal import ABSENT, FileWrite, content_hash

RUN = "run-1"


@pytest.fixture
def store(project_dir: Path) -> Iterator[Store]:
    with Store(project_dir / ".claude" / "workflow" / "state.db") as s:
        with s.transaction() as tx:
            tx.create(RUN, kind="delegation", state="writing", data={})
        yield s


def _journal(store: Store, root: Path, contents: dict[str, bytes], *, attempt: int) -> list[FileWrite]:
    with store.transaction() as tx:
        for path, previous in read_bases(root, list(contents)).items():
            tx.journal_base(RUN, path, previous=previous)
        for path, content in contents.items():
            tx.journal_content(RUN, path, content=content, attempt=attempt)
    return store.file_writes(RUN)


def _apply(store: Store, root: Path, writes: list[FileWrite]) -> None:
    for w in writes:
        step = apply_file(root, root / ".claude" / "workflow", RUN, w)
        assert step.conflict is None, step.conflict
        with store.transaction() as tx:
            tx.journal_applied(RUN, w.path, applied_hash=str(step.applied_hash), created_dirs=step.created)


def test_the_base_is_kept_from_packing_and_rollback_restores_it_byte_for_byte(project_dir: Path, store: Store) -> None:
    original = b"line 1\r\nline 2 \xe2\x9c\x93\n"
    (project_dir / "kept.txt").write_bytes(original)
    _apply(store, project_dir, _journal(store, project_dir, {"kept.txt": b"v1", "new/deep/made.txt": b"n1"}, attempt=1))
    assert (project_dir / "kept.txt").read_bytes() == b"v1"
    writes = _journal(store, project_dir, {"kept.txt": b"v2", "new/deep/made.txt": b"n2"}, attempt=2)
    assert {w.path: (w.existed, w.previous) for w in writes} == {"kept.txt": (True, original),
                                                                  "new/deep/made.txt": (False, None)}
    _apply(store, project_dir, writes)
    for _ in range(2):  # idempotent: a crash during rollback is finished by running it again
        for w in store.file_writes(RUN):
            assert rollback_file(project_dir, project_dir / ".claude" / "workflow", RUN, w).conflict is None
    assert (project_dir / "kept.txt").read_bytes() == original
    assert not (project_dir / "new").exists()  # the directories the run created went with its file


def test_an_edit_made_while_the_model_generated_is_a_conflict_not_the_original(project_dir: Path, store: Store) -> None:
    (project_dir / "a.py").write_bytes(b"seen by the model\n")
    with store.transaction() as tx:
        tx.journal_base(RUN, "a.py", previous=b"seen by the model\n")
    (project_dir / "a.py").write_bytes(b"the person's edit\n")
    with store.transaction() as tx:
        tx.journal_content(RUN, "a.py", content=b"the model's version\n", attempt=1)
    [w] = store.file_writes(RUN)
    step = apply_file(project_dir, project_dir / ".claude" / "workflow", RUN, w)
    assert step.conflict == {"path": "a.py", "found": "changed", "during": "writing",
                             "kept_at": ".claude/workflow/conflicts/run-1/a.py"}
    assert (project_dir / "a.py").read_bytes() == b"the person's edit\n"
    assert (project_dir / ".claude/workflow/conflicts/run-1/a.py").read_bytes() == b"the model's version\n"


def test_an_edit_made_after_the_write_is_never_rolled_back(project_dir: Path, store: Store) -> None:
    (project_dir / "a.py").write_bytes(b"base\n")
    _apply(store, project_dir, _journal(store, project_dir, {"a.py": b"ours\n"}, attempt=1))
    (project_dir / "a.py").write_bytes(b"edited during verify\n")
    [w] = store.file_writes(RUN)
    step = rollback_file(project_dir, project_dir / ".claude" / "workflow", RUN, w)
    assert step.conflict is not None and step.conflict["found"] == "changed"
    assert (project_dir / "a.py").read_bytes() == b"edited during verify\n"


def test_a_file_created_at_an_output_path_after_a_crash_is_not_deleted(project_dir: Path, store: Store) -> None:
    writes = _journal(store, project_dir, {"out.py": b"ours\n"}, attempt=1)  # journaled, then killed before writing
    (project_dir / "out.py").write_bytes(b"the user's new file\n")
    step = rollback_file(project_dir, project_dir / ".claude" / "workflow", RUN, writes[0])
    assert step.conflict is None  # the run never put anything there: nothing of its own to undo
    assert (project_dir / "out.py").read_bytes() == b"the user's new file\n"
    assert apply_action(content_hash(b"the user's new file\n"), writes[0]) is Action.CONFLICT


@pytest.mark.parametrize(("current", "expected"), [
    ("base", Action.WRITE), ("last", Action.WRITE), ("content", Action.NOTHING), ("other", Action.CONFLICT),
    (ABSENT, Action.CONFLICT),
])
def test_which_versions_an_attempt_may_replace(current: str, expected: Action) -> None:
    w = FileWrite("a", True, b"b", b"c", 2, "pending", content_hash(b"b"), (content_hash(b"l"),))
    hashes = {"base": content_hash(b"b"), "last": content_hash(b"l"), "content": content_hash(b"c"),
              "other": content_hash(b"o"), ABSENT: ABSENT}
    assert apply_action(hashes[current], w) is expected


@pytest.mark.parametrize(("current", "expected"), [
    ("base", Action.NOTHING), ("first", Action.WRITE), ("last", Action.WRITE), ("content", Action.WRITE),
    ("other", Action.CONFLICT), (ABSENT, Action.CONFLICT),
])
def test_which_versions_a_rollback_may_restore(current: str, expected: Action) -> None:
    w = FileWrite("a", True, b"b", b"c", 3, "written", content_hash(b"b"), (content_hash(b"f"), content_hash(b"l")))
    hashes = {"base": content_hash(b"b"), "first": content_hash(b"f"), "last": content_hash(b"l"),
              "content": content_hash(b"c"), "other": content_hash(b"o"), ABSENT: ABSENT}
    assert rollback_action(hashes[current], w) is expected


def test_journal_rows_are_written_only_if_the_transaction_commits(project_dir: Path, store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.journal_base(RUN, "a.txt", previous=None)
        raise RuntimeError("crash before commit")
    assert store.file_writes(RUN) == []


def test_a_conflict_reports_what_the_refusing_check_saw_even_if_the_editor_moves_on_before_the_report(
        project_dir: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # R5 caught this: the editor created the output, the run's check refused to replace it, the editor deleted it, and
    # a second look made for the report said "deleted" about a file the run never saw there.
    writes = _journal(store, project_dir, {"new.py": b"the model's version\n"}, attempt=1)
    (project_dir / "new.py").write_bytes(b"the editor's new file\n")
    real_on_disk = shared_tree.on_disk

    def editor_deletes_right_after_the_check(path: Path) -> str:
        seen = real_on_disk(path)
        path.unlink(missing_ok=True)
        return seen

    monkeypatch.setattr(shared_tree, "on_disk", editor_deletes_right_after_the_check)
    step = apply_file(project_dir, project_dir / ".claude" / "workflow", RUN, writes[0])
    assert step.conflict is not None
    assert (step.conflict["found"], step.conflict["during"]) == ("created", "writing")
    assert not (project_dir / "new.py").exists()  # the editor's delete stands: the run wrote nothing there
