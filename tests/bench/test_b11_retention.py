"""B11's first figure is a size, not a time, so it can be a test: a finished run's rows shrink to a small fraction
once the retention policy drops its bodies (issue #19: ~3.3x the file per run, kept forever, before)."""

from __future__ import annotations

from pathlib import Path

from bench import b11_retention


def test_a_compacted_run_keeps_a_small_fraction_of_the_bytes_it_stored(tmp_path: Path) -> None:
    before, after, file_bytes, _ = b11_retention.bytes_per_run(tmp_path, 2)
    assert before > 2 * file_bytes  # the prompt, the base and the new content: each about the file
    assert after <= b11_retention.TARGET_BYTES * before and after < file_bytes / 5
