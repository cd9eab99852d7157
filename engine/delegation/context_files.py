"""Context files a delegation sends to the model: inside the project, UTF-8 text (the whole file looked at), within
the size limit (never read whole past it), and not a secret, by name or by content, unless allowed.

A secret is found by the file's name (.env, id_rsa, *.pem, ...), or by its content anywhere in the file: a private
key block, a cloud or service token of a known shape, or, in a config-like file, a `KEY=value` / `KEY: value` line
whose key names a secret and whose value is not a placeholder. The refusal says which rule matched and on which line,
never the secret itself.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePath

from engine.delegation.paths import resolve_inside
from engine.errors import InvalidArgument, UserError

__all__ = [
    "MAX_CONTEXT_BYTES",
    "SecretFile",
    "SecretMatch",
    "looks_secret",
    "read_text_file",
    "secret_by_content",
    "secret_by_name",
]

MAX_CONTEXT_BYTES = 2 * 1024 * 1024
"""All context files of a delegation together (far more than any local model's context window holds)."""

_SECRET_NAMES = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "id_rsa*",
    "id_dsa*", "id_ecdsa*", "id_ed25519*", "*credentials*", "*secret*", ".netrc", ".pgpass", ".npmrc", ".pypirc",
    "*.kdbx", "htpasswd", ".htpasswd", "*.gpg", "*.asc",
)
_SECRET_DIRS = {".ssh", ".gnupg", ".aws", ".docker", ".kube"}
_TOKENS = re.compile(
    r"(?P<private_key>-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----)"
    r"|(?P<aws>\b(?:AKIA|ASIA)[0-9A-Z]{16}\b)"
    r"|(?P<github>\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}))"
    r"|(?P<slack>\bxox[baprs]-[A-Za-z0-9-]{10,})"
    r"|(?P<google>\bAIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-]))"
)
_TOKEN_NAMES = {
    "private_key": "a private key block (-----BEGIN ... PRIVATE KEY-----)", "aws": "an AWS access key id",
    "github": "a GitHub token", "slack": "a Slack token", "google": "a Google API key",
}
_CONFIG_NAMES = (".env", ".env.*", "*.env", "*.ini", "*.cfg", "*.conf", "*.toml", "*.yaml", "*.yml", "*.properties",
                 "*.json")
_SETTING = re.compile(
    r"""^[ \t]*(?:export[ \t]+)?(?P<q>["']?)(?P<key>[A-Za-z_][\w.\-]*)(?P=q)[ \t]*[:=][ \t]*(?P<value>[^\r\n]*)""",
    re.MULTILINE,
)
_JSON_SETTING = re.compile(r'"(?P<key>[A-Za-z_][\w.\-]*)"\s*:\s*"(?P<value>(?:[^"\\\n]|\\.)*)"')
_SECRET_WORDS = {"password", "passwd", "pwd", "passphrase", "secret", "token", "credential", "credentials", "apikey"}
_SECRET_PAIRS = {("api", "key"), ("private", "key"), ("secret", "key"), ("access", "key"), ("signing", "key"),
                 ("encryption", "key"), ("auth", "key")}
# Values that stand for a secret kept elsewhere (an environment or template reference) or for none at all: a
# config file that only names its secrets is safe to send.
_PLACEHOLDER = re.compile(
    r"(?:null|none|nil|true|false|~|change[_-]?me|placeholder|redacted|dummy|todo|tbd|secret|password|x+|\*+|\.+"
    r"|<[^>]*>|\$.*|\{\{.*\}\}|%\(.*\)s|%[A-Za-z_]+%|!\w+.*|your[_-].*|.*[_-]here|.*example.*)",
    re.IGNORECASE,
)
_MIN_SECRET_LEN = 4


class SecretFile(UserError):
    pass


@dataclass(frozen=True)
class SecretMatch:
    rule: str
    line: int | None = None
    """1-based; None for a rule on the file's name."""

    def describe(self) -> str:
        return self.rule if self.line is None else f"line {self.line}: {self.rule}"


def secret_by_name(path: PurePath) -> SecretMatch | None:
    """Names and directories that usually hold secrets (.env, private keys, credentials, ~/.ssh)."""
    name = path.name.lower()
    if any(fnmatch.fnmatch(name, pattern) for pattern in _SECRET_NAMES):
        return SecretMatch(f"its name {path.name!r} is one that usually holds secrets")
    if directories := _SECRET_DIRS & {p.lower() for p in path.parts[:-1]}:
        return SecretMatch(f"it is inside {min(directories)!r}, a directory of keys and credentials")
    return None


def _key_words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)  # camelCase -> camel_Case
    return [w for w in re.split(r"[_.\-]+", spaced.lower()) if w]


def _names_secret(key: str) -> bool:
    # The last word decides: `db_password` and `apiKey` are secrets, `token_url` and `max_tokens` are not.
    words = _key_words(key)
    return bool(words) and (words[-1] in _SECRET_WORDS or tuple(words[-2:]) in _SECRET_PAIRS)


def _value(raw: str) -> str:
    value = raw.strip()
    if value[:1] in ("'", '"'):
        end = value.find(value[0], 1)
        return value[1:end] if end > 0 else value[1:]
    return re.split(r"\s[#;]", value, maxsplit=1)[0].rstrip(",").strip()


def _is_placeholder(value: str) -> bool:
    return len(value) < _MIN_SECRET_LEN or value[:1] in ("[", "{") or _PLACEHOLDER.fullmatch(value) is not None


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def secret_by_content(path: PurePath, text: str) -> SecretMatch | None:
    """The first secret in the whole text: a known token shape anywhere, or (in config-like files) a setting whose
    key names a secret with a real value."""
    for match in _TOKENS.finditer(text):
        if match.lastgroup == "aws" and match.group().endswith("EXAMPLE"):
            continue  # AWS's documented example keys (AKIAIOSFODNN7EXAMPLE) fill tutorials, not credentials
        return SecretMatch(_TOKEN_NAMES[match.lastgroup or ""], _line(text, match.start()))
    if not any(fnmatch.fnmatch(path.name.lower(), pattern) for pattern in _CONFIG_NAMES):
        return None
    settings = _JSON_SETTING if path.name.lower().endswith(".json") else _SETTING
    for match in settings.finditer(text):
        if _names_secret(match["key"]) and not _is_placeholder(_value(match["value"])):
            return SecretMatch(f"the setting {match['key']!r} holds a value", _line(text, match.start()))
    return None


def looks_secret(path: PurePath, *, head: bytes | None = None) -> bool:
    """Whether `path` (and `head`, its content, when given) looks like a secret."""
    if secret_by_name(path) is not None:
        return True
    return head is not None and secret_by_content(path, head.decode("utf-8", errors="replace")) is not None


def _refuse_secret(field: str, relative: str, found: SecretMatch) -> SecretFile:
    return SecretFile(
        f"{field}: {relative!r} looks like a secret ({found.describe()}) and is not sent to the model; remove it "
        "from the context files, or pass allow_secrets=true (--allow-secrets) to send it anyway"
    )


def _read_at_most(path: Path, limit: int, *, field: str, relative: str) -> bytes:
    """At most `limit` bytes of a regular file; refuses a bigger one without reading past the limit."""
    expected = (f"a file within the context limit ({MAX_CONTEXT_BYTES} bytes for all context files together, "
                f"{limit} left for this one)")
    # O_NONBLOCK: a FIFO swapped in after the check must not block the open; O_NOFOLLOW: nor a symlink lead out.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(field, "an existing file inside the project", relative)
        if info.st_size > limit:
            raise InvalidArgument(field, f"{expected}; it has {info.st_size} bytes", relative)
        data = file.read(limit + 1)
    if len(data) > limit:  # it grew after fstat
        raise InvalidArgument(field, f"{expected}; it has more", relative)
    return data


def read_text_file(
    root: Path, relative: str, *, field: str, allow_secrets: bool = False, limit: int = MAX_CONTEXT_BYTES
) -> str:
    """A context file's text: inside root, at most `limit` bytes, UTF-8 text, and not a secret unless allowed."""
    path = resolve_inside(root, relative, field=field)
    inside = path.relative_to(Path(os.path.realpath(root)))
    if not allow_secrets and (found := secret_by_name(inside)) is not None:
        raise _refuse_secret(field, relative, found)  # refused unread
    try:
        if not path.is_file():
            raise InvalidArgument(field, "an existing file inside the project", relative)
        data = _read_at_most(path, limit, field=field, relative=relative)
    except OSError as exc:  # unreadable (permissions, a FIFO's error, ...): say which file, not a bare OSError
        raise InvalidArgument(field, f"a readable file ({exc.strerror or exc})", relative) from None
    if (nul := data.find(b"\x00")) >= 0:
        raise InvalidArgument(field, f"a UTF-8 text file (this one is binary: a NUL byte at {nul})", relative)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(field, f"a UTF-8 text file (byte {exc.start} is not UTF-8)", relative) from None
    if not allow_secrets and (found := secret_by_content(inside, text)) is not None:
        raise _refuse_secret(field, relative, found)
    return text
