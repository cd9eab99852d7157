"""Paths a delegation names: resolved inside the project root through every symlink, given one identity per file
(`output_identity`), and checked as outputs against the protected paths (`check_output`).

Two spellings name the same file when their identities' keys are equal: the key is the real path (symlinks
resolved) relative to the real project root, case-folded in directories whose file system ignores case. Output locks
are keyed on it, and protection is decided on it, so no alias (`./a`, `a//b`, `a\\b`, a symlink, `A` for `a` on a
case-insensitive file system) reaches a file that its plain spelling could not.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from engine.delegation.git_hooks import hook_directories
from engine.errors import InvalidArgument

__all__ = [
    "CONFIG_RULES",
    "HOOKS_RULE",
    "MAX_DEPTH",
    "NAME_MAX",
    "PATH_MAX",
    "WORKFLOW_DIR",
    "OutputPath",
    "ProtectedPath",
    "Protection",
    "Rule",
    "canonical_relative",
    "check_output",
    "directory_ignores_case",
    "file_kind",
    "output_identity",
    "resolve_inside",
    "rule_for_parts",
    "writable_target",
]

NAME_MAX, PATH_MAX, MAX_DEPTH = 255, 4000, 64
"""Longest file name, relative path (bytes) and directory depth accepted in a path argument."""
OS_PATH_MAX = 4096
"""Linux's PATH_MAX, for the absolute path (the project root included)."""
WORKFLOW_DIR = PurePosixPath(".claude", "workflow")
"""Where the engine keeps its journal and logs (engine.project.Project.workflow_dir)."""
CaseProbe = Callable[[Path], bool]


def resolve_inside(root: Path, relative: str, *, field: str) -> Path:
    """`relative` resolved inside `root`, following every existing symlink; refuses anything that leaves root."""
    expected = "a relative path inside the project (no absolute path, no '..', no symlink leading out)"
    if not isinstance(relative, str) or not relative.strip():
        raise InvalidArgument(field, expected, relative)
    if "\x00" in relative:
        raise InvalidArgument(field, expected + ", without NUL bytes", relative)
    try:
        encoded = relative.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (JSON allows "\ud800"): no file system can name it
        raise InvalidArgument(field, expected + ", in valid UTF-8", relative) from None
    names = relative.replace("\\", "/").split("/")
    if len(encoded) > PATH_MAX or any(len(name.encode("utf-8")) > NAME_MAX for name in names):
        # Refused here, not by the OS later: an over-long name fails stat() with ENAMETOOLONG, which is no UserError.
        raise InvalidArgument(field, expected + f", of at most {PATH_MAX} bytes with names of at most {NAME_MAX}",
                              relative)
    if len([name for name in names if name not in ("", ".")]) > MAX_DEPTH:
        # 1500 nested directories are legal, but no project has them, and tools (shutil.rmtree) fail on them.
        raise InvalidArgument(field, expected + f", at most {MAX_DEPTH} directories deep", relative)
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", relative):
        raise InvalidArgument(field, expected, relative)
    if ".." in pure.parts:
        raise InvalidArgument(field, expected, relative)
    real_root = Path(os.path.realpath(root))
    if len(str(real_root / pure).encode("utf-8")) >= OS_PATH_MAX:
        raise InvalidArgument(field, expected + f"; inside {real_root} it is longer than the system allows",
                              relative)
    target = Path(os.path.realpath(real_root / pure))
    if target != real_root and real_root not in target.parents:
        raise InvalidArgument(field, expected + f"; it resolves to {target}", relative)
    if target == real_root:
        raise InvalidArgument(field, "a file path, not the project root", relative)
    return target


# -- identity ----------------------------------------------------------------------------------------------------


def canonical_relative(relative: str) -> str:
    """The one spelling a requested path is stored under: `/` for `\\`, no `.` or empty segments (`./a//b/` is
    `a/b`). Pure; `..` is left for resolve_inside to refuse. engine.executor.answers reads the model's paths the
    same way (a test holds the two together)."""
    return "/".join(part for part in relative.replace("\\", "/").split("/") if part not in ("", "."))


@functools.lru_cache(maxsize=4096)
def _ignores_case(directory: str) -> bool:
    try:
        with os.scandir(directory) as entries:
            names = {entry.name for _, entry in zip(range(256), entries, strict=False)}
    except OSError:
        names = set()
    # A listed name whose case-swapped twin is not listed but stats as the same file: lookups here ignore case.
    for name in sorted(names):
        swapped = name.swapcase()
        if swapped == name or swapped in names:
            continue
        return _same_file(os.path.join(directory, name), os.path.join(directory, swapped))
    # Nothing cased to probe inside: ask the parent about the directory's own name (same file system, mostly).
    parent, own = os.path.split(directory.rstrip("/"))
    if own and own.swapcase() != own and parent:
        return _same_file(directory, os.path.join(parent, own.swapcase()))
    return False


def _same_file(a: str, b: str) -> bool:
    try:
        first, second = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def directory_ignores_case(directory: Path) -> bool:
    """Whether names in `directory` are looked up without regard to case (macOS and Windows defaults, ext4 casefold
    directories): probed once per directory by stat-ing a case-swapped name, then cached."""
    return _ignores_case(str(directory))


@dataclass(frozen=True)
class OutputPath:
    relative: str
    """The canonical spelling (canonical_relative), as the run stores it."""
    real: Path
    """The resolved real path, inside the real project root."""
    key: str
    """The file's identity: `real` relative to the real root, case-folded where the file system ignores case."""

    @property
    def parent_keys(self) -> Iterator[str]:
        """The keys of the directories above this file (inside the project)."""
        parts = self.key.split("/")
        return ("/".join(parts[:i]) for i in range(1, len(parts)))


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _key_parts(real_root: Path, real: Path, ignores_case: CaseProbe) -> tuple[str, ...]:
    """`real` relative to `real_root`, each name folded when the directory holding it ignores case; a directory that
    does not exist yet will be made where its nearest existing ancestor is, so it inherits that answer."""
    parts = real.relative_to(real_root).parts
    directory, folding, exists = real_root, ignores_case(real_root), True
    key = []
    for part in parts:
        key.append(_fold(part) if folding else part)
        directory = directory / part
        if exists and len(key) < len(parts) and directory.is_dir():
            folding = ignores_case(directory)
        else:
            exists = False
    return tuple(key)


def output_identity(
    root: Path, relative: str, *, field: str = "path", ignores_case: CaseProbe = directory_ignores_case
) -> OutputPath:
    """The canonical spelling, the real path and the identity key of an output path (see the module's docstring).
    Refuses what resolve_inside refuses; apart from stat calls (cached per directory for the case probe), pure."""
    real = resolve_inside(root, relative, field=field)
    real_root = Path(os.path.realpath(root))
    return OutputPath(canonical_relative(relative), real, "/".join(_key_parts(real_root, real, ignores_case)))


# -- protection ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    pattern: str
    """As docs/safety.md lists it: `.git/**`, `.claude/settings.json`, ..."""
    why: str
    opt_in: bool
    """False: never an output. True: an output only with allow_config_writes."""


NEVER_GIT = Rule(".git/** (at any depth)", "git's own files and hooks run code on the next git command", False)
NEVER_STATE = Rule(f"{WORKFLOW_DIR}/**", "the engine's own state (its journal and logs)", False)
CONFIG_RULES: tuple[Rule, ...] = tuple(Rule(pattern, why, True) for pattern, why in (
    (".claude/settings.json", "Claude Code's settings grant tool permissions and run hooks"),
    (".claude/settings.local.json", "Claude Code's settings grant tool permissions and run hooks"),
    (".claude/commands/**", "Claude Code follows these commands with the permissions it has"),
    (".claude/skills/**", "Claude Code follows these skills with the permissions it has"),
    (".claude/agents/**", "Claude Code runs these agents with the permissions they declare"),
    (".claude/hooks/**", "Claude Code runs these hooks as commands"),
    (".mcp.json", "it names the commands Claude Code starts as MCP servers"),
    (".gitattributes", "it picks the filter and diff drivers git runs"),
    (".gitmodules", "it names the submodules (URLs, update commands) git fetches and runs"),
    (".envrc", "direnv runs it as shell code on entering the directory"),
    (".pre-commit-config.yaml", "pre-commit runs the hooks it lists on the next commit"),
    (".github/workflows/**", "CI runs these workflows with the repository's secrets"),
))
"""Configuration that runs code or grants permissions (docs/safety.md): an output only with allow_config_writes."""
HOOKS_RULE = Rule("the core.hooksPath directory (and its parent when it ends in /_, as husky's .husky/_)",
                  "git runs the hooks there on the next commit or checkout", True)
_CONFIG_CLAUDE = tuple(r.pattern for r in CONFIG_RULES if r.pattern.startswith(".claude/settings"))
_CONFIG_DIRS = tuple(tuple(r.pattern.split("/")[:2]) for r in CONFIG_RULES if r.pattern.endswith("/**"))
_CONFIG_FILES = tuple(r.pattern for r in CONFIG_RULES if "/" not in r.pattern)
_RULE_BY_PATTERN = {rule.pattern: rule for rule in CONFIG_RULES}
_IGNORABLE = dict.fromkeys([*range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF])
"""Code points HFS+ ignores in names (git refuses `.g\\u200cit` for the same reason)."""


def _protected_name(name: str) -> str:
    # Windows drops trailing dots and spaces (`.git.` is `.git`), and `git~1` is the 8.3 short name of `.git`.
    folded = _fold(name.translate(_IGNORABLE)).rstrip(". ")
    return ".git" if folded == "git~1" else folded


def rule_for_parts(parts: Sequence[str]) -> Rule | None:
    """The rule a spelling falls under, matched at any depth and without regard to case on every file system: a
    tree checked out on a case-insensitive one makes `.GIT` the same as `.git` (git itself refuses both)."""
    names = [_protected_name(p) for p in parts]
    if ".git" in names:
        return NEVER_GIT
    pairs = set(itertools.pairwise(names))
    if tuple(WORKFLOW_DIR.parts) in pairs:
        return NEVER_STATE
    if len(names) >= 2 and "/".join(names[-2:]) in _CONFIG_CLAUDE:
        return _RULE_BY_PATTERN["/".join(names[-2:])]
    for pair in _CONFIG_DIRS:
        if pair in pairs:
            return _RULE_BY_PATTERN["/".join(pair) + "/**"]
    return _RULE_BY_PATTERN.get(names[-1]) if names and names[-1] in _CONFIG_FILES else None


_ANCHORS = (".git", ".claude", str(WORKFLOW_DIR), ".github", ".github/workflows", *_CONFIG_CLAUDE, *_CONFIG_FILES)
"""Protected names at the project root whose symlinks are followed: with `.claude` a symlink to `conf/`,
`conf/workflow/state.db` is the engine's journal."""


def _is_git_dir(directory: Path) -> bool:
    # What git itself checks (setup.c is_git_directory): a git directory under any name (`--separate-git-dir`).
    return (directory / "HEAD").is_file() and (directory / "objects").is_dir() and (directory / "refs").is_dir()


@dataclass
class Protection:
    """The protected paths of one project, with the real places its root-level protected names lead to."""

    real_root: Path
    ignores_case: CaseProbe = directory_ignores_case
    anchors: dict[str, str] = field(default_factory=dict)
    """Identity key of an anchor's real path -> the anchor's protected spelling."""
    _git_dirs: dict[Path, bool] = field(default_factory=dict)
    hooks: dict[str, str] = field(default_factory=dict)
    """Identity key of a directory git runs hooks from (git_hooks.hook_directories) -> its spelling."""

    @classmethod
    def of(cls, root: Path, *, ignores_case: CaseProbe = directory_ignores_case) -> Protection:
        real_root = Path(os.path.realpath(root))
        protection = cls(real_root, ignores_case)
        for anchor in _ANCHORS:
            real = Path(os.path.realpath(real_root / anchor))
            if real != real_root and real_root in real.parents:  # a link leading out is refused as an output anyway
                protection.anchors["/".join(_key_parts(real_root, real, ignores_case))] = anchor
        for hooks in hook_directories(real_root):
            if real_root in hooks.parents:
                protection.hooks["/".join(_key_parts(real_root, hooks, ignores_case))] = "/".join(
                    hooks.relative_to(real_root).parts)
        return protection

    def rule_for(self, output: OutputPath) -> tuple[Rule, str] | None:
        """The rule `output` falls under and how (the spelling that matched), or None; a rule that never allows the
        write wins over an opt-in one (`.claude/hooks` may be a symlink into `.git/hooks`)."""
        spellings = [output.relative, "/".join(output.real.relative_to(self.real_root).parts)]
        keys = [*output.parent_keys, output.key]
        for i, key in enumerate(keys):
            if (anchor := self.anchors.get(key)) is not None:
                spellings.append("/".join([anchor, *output.key.split("/")[i + 1:]]))
        found = [(rule, f"it is {spelling!r}") for spelling in spellings
                 if (rule := rule_for_parts(spelling.split("/")))]
        found += [(HOOKS_RULE, f"inside {self.hooks[key]!r}, where git runs hooks from") for key in output.parent_keys
                  if key in self.hooks]
        for directory in output.real.parents:
            if directory == self.real_root:
                break
            if self._git_dirs.setdefault(directory, _is_git_dir(directory)):
                inside = "/".join(directory.relative_to(self.real_root).parts)
                found.append((NEVER_GIT, f"inside the git directory {inside!r}"))
                break
        return min(found, key=lambda item: item[0].opt_in, default=None)


class ProtectedPath(InvalidArgument):
    """An output path under a protected rule; the message names the rule and, for configuration, the opt-in."""

    def __init__(self, field: str, relative: str, rule: Rule, how: str) -> None:
        super().__init__(field, "a path the run may write")
        # The usual "expected X, got Y" cannot say which rule matched, through which alias, nor the way out.
        via = "" if how == f"it is {relative!r}" else f" ({how})"
        fix = ("pass allow_config_writes=true (--allow-config-writes) to let the run write it" if rule.opt_in
               else "it is never an output")
        self.args = (f"{field}: {relative!r}{via} is protected by the rule `{rule.pattern}`: {rule.why}; {fix}",)
        self.rule = rule


def file_kind(path: Path) -> str | None:
    """What `path` is when it is there but not a regular file ("a directory", "a FIFO", ...), without opening it
    nor following a symlink; None for a regular file or nothing."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symlink"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def writable_target(root: Path, relative: str, *, field: str, allow_config_writes: bool = False) -> Path:
    """The real path of an output a run may write (check_output, for a single path)."""
    return check_output(root, relative, field=field, allow_config_writes=allow_config_writes).real


def check_output(
    root: Path, relative: str, *, field: str, allow_config_writes: bool, protection: Protection | None = None
) -> OutputPath:
    """`relative` as an output a run may write: inside root, not a directory nor below a file, and not protected
    (configuration only with `allow_config_writes`). `protection` is built once per request by the caller."""
    protection = protection or Protection.of(root)
    output = output_identity(root, relative, field=field, ignores_case=protection.ignores_case)
    if (found := protection.rule_for(output)) is not None and not (found[0].opt_in and allow_config_writes):
        raise ProtectedPath(field, relative, *found)
    target, real_root = output.real, protection.real_root
    if target.is_dir():
        raise InvalidArgument(field, "a file path, not a directory", relative)
    if (kind := file_kind(target)) is not None:
        # Opening one would block (a FIFO) or do what the device does; the run could never write it atomically.
        raise InvalidArgument(field, f"a regular file (or none yet), not {kind}", relative)
    parent = target.parent
    while parent != real_root and not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InvalidArgument(field, f"a path below directories, but {parent.relative_to(real_root)} is a file",
                              relative)
    return output
