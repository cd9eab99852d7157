"""Context files a delegation sends to the model: inside the project, UTF-8 text, and not a secret unless allowed."""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path

from engine.delegation.paths import resolve_inside
from engine.errors import InvalidArgument, UserError

__all__ = ["SecretFile", "looks_secret", "read_text_file"]

_SECRET_NAMES = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "id_rsa*",
    "id_dsa*", "id_ecdsa*", "id_ed25519*", "*credentials*", "*secret*", ".netrc", ".pgpass", ".npmrc", ".pypirc",
    "*.kdbx", "htpasswd", ".htpasswd", "*.gpg", "*.asc",
)
_SECRET_DIRS = {".ssh", ".gnupg", ".aws", ".docker", ".kube"}
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")


class SecretFile(UserError):
    pass


def looks_secret(path: Path, *, head: bytes | None = None) -> bool:
    """Names and contents that usually hold secrets (.env, private keys, credentials)."""
    name = path.name.lower()
    if any(fnmatch.fnmatch(name, pattern) for pattern in _SECRET_NAMES):
        return True
    if _SECRET_DIRS & {p.lower() for p in path.parts[:-1]}:
        return True
    return head is not None and _PRIVATE_KEY.search(head) is not None


def read_text_file(root: Path, relative: str, *, field: str, allow_secrets: bool = False) -> str:
    """A context file's text: inside root, UTF-8 text, and not a secret unless explicitly allowed."""
    path = resolve_inside(root, relative, field=field)
    try:
        if not path.is_file():
            raise InvalidArgument(field, "an existing file inside the project", relative)
        data = path.read_bytes()
    except OSError as exc:  # unreadable (permissions, a FIFO's error, ...): say which file, not a bare OSError
        raise InvalidArgument(field, f"a readable file ({exc.strerror or exc})", relative) from None
    if not allow_secrets and looks_secret(path.relative_to(Path(os.path.realpath(root))), head=data[:65536]):
        raise SecretFile(
            f"{field}: {relative!r} looks like a secret (.env, private key, credentials) and is not sent to the "
            "model; remove it from the context files, or pass allow_secrets=true (--allow-secrets) if it is safe"
        )
    if b"\x00" in data[:8192]:
        raise InvalidArgument(field, "a UTF-8 text file (this one is binary)", relative)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(field, f"a UTF-8 text file (byte {exc.start} is not UTF-8)", relative) from None
