"""engine/delegation/context_files.py: secrets by content as well as by name, the whole file looked at, and the size
limit (issue #10, points 4 and 8)."""

from __future__ import annotations

import os
from pathlib import Path, PurePath

import pytest

from engine.delegation.context_files import (
    MAX_CONTEXT_BYTES,
    SecretFile,
    read_text_file,
    secret_by_content,
    secret_by_name,
)
from engine.errors import InvalidArgument

__all__: list[str] = []

# Built from pieces so that no whole token sits in this file for a scanner to find.
GITHUB = "ghp_" + "a1B2c3D4e5F6g7H8i9J0" * 2
SECRETS = {
    "private key": ("notes.txt", "intro\n\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n", 3,
                    "private key block", "b3BlbnNzaC1rZXktdjEAAAAA"),
    "pgp private key": ("keys.txt", "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF\n", 1, "private key block",
                        "lQOYBF"),
    "aws": ("deploy.py", 'REGION = "eu"\nKEY_ID = "' + "AKIA" + "Q3ZX7Z2K4M9PAB1C" + '"\n', 2,
            "AWS access key id", "Q3ZX7Z2K4M9PAB1C"),
    "aws session": ("ci.sh", "export ID=" + "ASIA" + "ZZZZ1111YYYY2222\n", 1, "AWS access key id",
                    "ZZZZ1111YYYY2222"),
    "github": ("README.md", f"clone with\n\n    git clone https://{GITHUB}@github.com/o/r\n", 3, "GitHub token",
               GITHUB),
    "github pat": ("run.py", "T = '" + "github_pat_" + "11ABCDEFG0123456789_abcdefXYZ" + "'\n", 1,
                   "GitHub token", "11ABCDEFG0123456789_abcdefXYZ"),
    "slack": ("hook.js", "const t = '" + "xoxb-" + "123456789012-abcdefABCDEF" + "';\n", 1, "Slack token",
              "123456789012-abcdefABCDEF"),
    "google": ("maps.html", "<script src='maps.js?key=" + "AIza" + "SyA1234567890abcdefghijklmnopqrstuv" + "'>\n", 1,
               "Google API key", "SyA1234567890abcdefghijklmnopqrstuv"),
    "yaml setting": ("config/app.yaml", "db:\n  host: localhost\n  password: s3cr3t-Pa55\n", 3,
                     "the setting 'password'", "s3cr3t-Pa55"),
    "ini setting": ("setup.cfg", "[auth]\nuser = me\nclient_secret = 9f8e7d6c5b4a ; rotated\n", 3,
                    "the setting 'client_secret'", "9f8e7d6c5b4a"),
    "toml setting": ("pyproject.toml", '[tool.x]\napiKey = "k-31337-zz"\n', 2, "the setting 'apiKey'",
                     "k-31337-zz"),
    "json setting": ("settings.json", '{"name": "app", "auth": {"access_key": "wJalrXUtnFEMIbPxRfiCY"}}\n', 1,
                     "the setting 'access_key'", "wJalrXUtnFEMIbPxRfiCY"),
    "properties setting": ("app.properties", "spring.datasource.password=Tr0ub4dor&3\n", 1,
                           "the setting 'spring.datasource.password'", "Tr0ub4dor&3"),
    "conf export": ("local.conf", "export GITLAB_TOKEN='glpat-0000aaaa'\n", 1, "the setting 'GITLAB_TOKEN'",
                    "glpat-0000aaaa"),
}


@pytest.mark.parametrize("case", sorted(SECRETS))
def test_a_secret_inside_a_file_keeps_it_out_naming_the_rule_and_the_line_never_the_secret(
    project_dir: Path, case: str
) -> None:
    name, text, line, rule, secret = SECRETS[case]
    (project_dir / name).parent.mkdir(parents=True, exist_ok=True)
    (project_dir / name).write_text(text)
    with pytest.raises(SecretFile) as caught:
        read_text_file(project_dir, name, field="context_files[2]")
    message = str(caught.value)
    assert message.startswith(f"context_files[2]: {name!r} looks like a secret (line {line}: ")
    assert rule in message and "allow_secrets=true (--allow-secrets)" in message
    assert secret not in message
    assert read_text_file(project_dir, name, field="context_files[2]", allow_secrets=True) == text


def test_a_secret_far_past_the_first_64_kib_is_found(project_dir: Path) -> None:
    filler = "x = 1\n" * 40_000  # 240 KB of ordinary code first
    (project_dir / "big.py").write_text(filler + "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n")
    with pytest.raises(SecretFile, match="line 40001: a private key block"):
        read_text_file(project_dir, "big.py", field="context_files[0]")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("config/app.yaml", "db:\n  password: ${DB_PASSWORD}\n  token: changeme\n  secret: <your secret>\n"),
        ("settings.toml", 'api_key = ""\nprivate_key = "YOUR_KEY_HERE"\npassword = "***"\n'),
        ("app.ini", "[llm]\nmax_tokens = 4096\ntoken_url = https://auth.example.org/token\npassword_file = x.txt\n"),
        ("package.json", '{"scripts": {"tokenize": "node tokenize.js"}, "passwordHint": "see vault"}\n'),
        ("app.cfg", "password = %(DB_PASSWORD)s\nsecret_key = {{ vault_secret }}\n"),
        ("ci.yml", "env:\n  GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}\n"),
        ("docs.md", "Set `password: hunter2-real` in your config.\n"),  # not a config file: settings not scanned
        ("tutorial.py", "aws_access_key_id = 'AKIA" + "IOSFODNN7EXAMPLE'\n"),  # AWS's documented example key
    ],
)
def test_placeholders_references_and_non_secret_keys_are_not_secrets(project_dir: Path, name: str, text: str) -> None:
    (project_dir / name).parent.mkdir(parents=True, exist_ok=True)
    (project_dir / name).write_text(text)
    assert read_text_file(project_dir, name, field="context_files[0]") == text


def test_secret_names_are_refused_without_reading_the_file(project_dir: Path) -> None:
    os.mkfifo(project_dir / ".env")  # were it opened first, the error would say it is no regular file
    with pytest.raises(SecretFile, match=r"its name '\.env' is one that usually holds secrets"):
        read_text_file(project_dir, ".env", field="context_files[0]")
    assert secret_by_name(PurePath(".ssh/config")) is not None
    assert secret_by_name(PurePath("src/environment.py")) is None
    assert secret_by_content(PurePath("src/environment.py"), "x = 1\n") is None


def test_binary_detection_looks_at_the_whole_file(project_dir: Path) -> None:
    (project_dir / "late.txt").write_bytes(b"text\n" * 10_000 + b"\x00tail")  # the NUL past the first 8 KiB
    with pytest.raises(InvalidArgument, match="binary: a NUL byte at 50000"):
        read_text_file(project_dir, "late.txt", field="context_files[0]")


def test_a_file_over_the_limit_is_refused_without_being_read_whole(project_dir: Path) -> None:
    huge = project_dir / "huge.log"
    with open(huge, "wb") as f:
        f.truncate(1 << 40)  # a sparse terabyte: read whole, this test would never end
    with pytest.raises(InvalidArgument) as caught:
        read_text_file(project_dir, "huge.log", field="context_files[1]")
    assert str(caught.value).startswith("context_files[1]: expected a file within the context limit "
                                        f"({MAX_CONTEXT_BYTES} bytes for all context files together")
    assert f"it has {1 << 40} bytes" in str(caught.value)
    (project_dir / "small.txt").write_text("12345")
    with pytest.raises(InvalidArgument, match="4 left for this one"):
        read_text_file(project_dir, "small.txt", field="context_files[2]", limit=4)
    assert read_text_file(project_dir, "small.txt", field="context_files[2]", limit=5) == "12345"


def test_a_fifo_is_refused_without_blocking(project_dir: Path) -> None:
    os.mkfifo(project_dir / "pipe")
    with pytest.raises(InvalidArgument, match="an existing file"):
        read_text_file(project_dir, "pipe", field="context_files[0]")
