from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.delegation import writes
from engine.delegation.context_files import SecretFile, looks_secret, read_text_file
from engine.delegation.paths import resolve_inside
from engine.delegation.writes import atomic_write
from engine.errors import InvalidArgument


@pytest.mark.parametrize("bad", ["/etc/passwd", "../outside.py", "src/../../x", "a\x00b", "", "C:\\win.ini", "."])
def test_paths_outside_the_project_are_refused_naming_the_field(project_dir: Path, bad: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_inside(project_dir, bad, field="output_files[0].path")
    assert caught.value.field == "output_files[0].path"
    assert "relative path inside the project" in str(caught.value) or "not the project root" in str(caught.value)


def test_a_symlinked_parent_that_leads_out_is_refused(project_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (project_dir / "link").symlink_to(outside)
    with pytest.raises(InvalidArgument, match="resolves to"):
        resolve_inside(project_dir, "link/file.py", field="output_files[0].path")
    (project_dir / "inner").mkdir()
    (project_dir / "alias").symlink_to(project_dir / "inner")
    assert resolve_inside(project_dir, "alias/f.py", field="f") == (project_dir / "inner" / "f.py").resolve()


@pytest.mark.parametrize(
    "name", [".env", ".env.local", "id_rsa", "server.pem", "aws_credentials.json", "deploy.key", ".ssh/config"]
)
def test_secret_looking_names_are_detected(name: str) -> None:
    assert looks_secret(Path(name))


def test_ordinary_files_are_not_secrets_but_a_private_key_inside_one_is() -> None:
    assert not looks_secret(Path("src/environment.py"), head=b"x = 1")
    assert looks_secret(Path("notes.txt"), head=b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc")


def test_a_secret_context_file_is_refused_unless_allowed(project_dir: Path) -> None:
    (project_dir / ".env").write_text("TOKEN=abc\n")
    with pytest.raises(SecretFile, match="allow_secrets"):
        read_text_file(project_dir, ".env", field="context_files[0]")
    assert read_text_file(project_dir, ".env", field="context_files[0]", allow_secrets=True) == "TOKEN=abc\n"


def test_binary_and_non_utf8_context_files_are_refused(project_dir: Path) -> None:
    (project_dir / "blob.bin").write_bytes(b"\x00\x01\x02")
    (project_dir / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InvalidArgument, match="binary"):
        read_text_file(project_dir, "blob.bin", field="context_files[0]")
    with pytest.raises(InvalidArgument, match="UTF-8"):
        read_text_file(project_dir, "latin.txt", field="context_files[1]")


def test_atomic_write_replaces_content_keeps_the_mode_and_leaves_no_temp_file(project_dir: Path) -> None:
    target = project_dir / "bin" / "run.sh"
    atomic_write(target, b"#!/bin/sh\necho 1\n")
    os.chmod(target, 0o755)
    atomic_write(target, b"#!/bin/sh\necho 2\n")
    assert target.read_bytes() == b"#!/bin/sh\necho 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert sorted(p.name for p in target.parent.iterdir()) == ["run.sh"]


def test_a_255_byte_name_is_written_atomically_and_its_killed_write_temp_is_found_again(project_dir: Path) -> None:
    target = project_dir / ("x" * 251 + ".txt")
    atomic_write(target, b"one\n")
    assert target.read_bytes() == b"one\n"
    leftover = writes._temp_with(target, b"half")  # what a write killed before its rename leaves
    assert len(Path(leftover).name.encode()) <= 255 and writes.TEMP_MARK in leftover
    assert writes.remove_stale_temps(target) == [Path(leftover).name]
    assert sorted(p.name for p in project_dir.iterdir()) == [target.name]
