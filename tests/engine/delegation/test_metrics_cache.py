"""read_log parses only what was appended since its last read, and still sees rewrites, truncation and partial
lines exactly as a full parse would."""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.delegation.metrics import _parse_lines, append_record, read_log


def _full(path: Path) -> tuple[list[dict], int]:
    return _parse_lines(path.read_bytes())


def test_appends_are_seen_and_match_a_full_parse(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    for i in range(3):
        append_record(log, {"i": i})
        contents = read_log(log)
        assert (contents.records, contents.corrupt_lines) == _full(log)
    assert [r["i"] for r in read_log(log).records] == [0, 1, 2]


def test_rewrite_truncate_and_replace_are_parsed_again(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(5)))
    assert len(read_log(log).records) == 5
    log.write_text(json.dumps({"j": 1}) + "\n" + "x" * 200 + "\n")  # same inode, larger, different content
    assert read_log(log).records == [{"j": 1}] and read_log(log).corrupt_lines == 1
    log.write_text(json.dumps({"k": 1}) + "\n")  # truncated
    assert read_log(log).records == [{"k": 1}]
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"m": 1}) + "\n" + json.dumps({"m": 2}) + "\n")
    os.replace(other, log)  # a new file at the same path
    assert read_log(log).records == [{"m": 1}, {"m": 2}]
    log.unlink()
    assert read_log(log).records == []


def test_an_unterminated_last_line_is_read_but_not_kept(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"a": 1}\n{"b": ')
    assert read_log(log).records == [{"a": 1}] and read_log(log).corrupt_lines == 1
    with open(log, "ab") as f:
        f.write(b'2}\n{"d"')  # the writer finished the line (and started another)
    contents = read_log(log)
    assert contents.records == [{"a": 1}, {"b": 2}] and contents.corrupt_lines == 1
    assert (contents.records, contents.corrupt_lines) == _full(log)


def test_callers_cannot_change_the_kept_records_list(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    append_record(log, {"i": 0})
    read_log(log).records.append({"junk": True})
    assert read_log(log).records == [{"i": 0}]
