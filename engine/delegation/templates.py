"""A batch template's two edges with the outside world: the glob it spreads over (files inside the project only, a
bounded walk that no symlink loop can make endless) and the values taken from file names, which reach a shell in
`verify` (quoted there with shlex.quote, and refused where the template's own quoting would undo that).

Pure apart from the directory listing of `project_glob`, which callers on an event loop run in a worker thread.
"""

from __future__ import annotations

import fnmatch
import glob as globbing
import os
import re
import shlex
import stat
from pathlib import Path, PurePosixPath

from engine.errors import InvalidArgument

__all__ = ["MAX_GLOB_ENTRIES", "PLACEHOLDERS", "fill", "project_glob", "shell_placeholder_problems"]

PLACEHOLDERS = ("{path}", "{name}", "{stem}", "{dir}")
MAX_GLOB_ENTRIES = 100_000
"""Directory entries a glob may look at before it is refused as too wide (a project's source tree has far fewer)."""
_PLACEHOLDER = re.compile(r"\{(?:path|name|stem|dir)\}")


def _values(path: str) -> dict[str, str]:
    p = PurePosixPath(path)
    parent = str(p.parent)
    return {"{path}": path, "{name}": p.name, "{stem}": p.stem, "{dir}": "" if parent == "." else parent}


def fill(text: str, path: str, *, shell: bool = False) -> str:
    """`text` with each placeholder replaced by its value for `path`; with `shell`, each value is one shell word
    (shlex.quote), so `src/a$(touch X).py` reaches `sh -c` as a name, never as a command."""
    values = _values(path)
    return _PLACEHOLDER.sub(lambda m: shlex.quote(values[m.group()]) if shell else values[m.group()], text)


# -- where a placeholder sits in a shell command ---------------------------------------------------------------


def _heredoc(command: str, i: int) -> tuple[str, bool, int]:
    """The delimiter of the here-document whose `<<` is at `i`, whether tabs are stripped (`<<-`), and where the
    operator's word ends."""
    j = i + 2
    tabs = command.startswith("-", j)
    j += tabs
    while j < len(command) and command[j] in " \t":
        j += 1
    start = j
    while j < len(command) and command[j] not in " \t\n;&|<>()":
        j += 1
    return re.sub(r"[\"'\\]", "", command[start:j]), tabs, j


def _heredoc_bodies(command: str, i: int, pending: list[tuple[str, bool]], problems: list[str]) -> int:
    """Skip the bodies of the pending here-documents that start at `i` (after a newline); a placeholder in one is
    a problem (a body is expanded as if in double quotes). Returns where the command goes on."""
    for delimiter, tabs in pending:
        while i < len(command):
            end = command.find("\n", i)
            line = command[i:end if end >= 0 else len(command)]
            i = end + 1 if end >= 0 else len(command)
            if (line.lstrip("\t") if tabs else line) == delimiter:
                break
            problems += [f"{m.group()} inside a here-document" for m in _PLACEHOLDER.finditer(line)]
    pending.clear()
    return i


def shell_placeholder_problems(command: str) -> list[str]:
    """Each placeholder of `command` that sits where a quoted value would not stay one literal word: inside quotes
    of the template's own ('...', "...", $'...'), after a backslash, inside backquotes or a here-document. A
    placeholder in plain text (`pytest tests/test_{stem}.py`) is safe once quoted by `fill(..., shell=True)`."""
    problems: list[str] = []
    mode, backquote, pending = "plain", False, []
    i = 0
    while i < len(command):
        if m := _PLACEHOLDER.match(command, i):
            where = {"single": "inside single quotes", "ansi": "inside $'...' quotes",
                     "double": "inside double quotes"}.get(mode) or ("inside backquotes" if backquote else None)
            if where:
                problems.append(f"{m.group()} {where}")
            i = m.end()
            continue
        c = command[i]
        if mode == "single":
            mode = "plain" if c == "'" else mode
        elif c == "\\":
            if m := _PLACEHOLDER.match(command, i + 1):
                problems.append(f"{m.group()} after a backslash")
            i += 2
            continue
        elif mode == "ansi":
            mode = "plain" if c == "'" else mode
        elif mode == "double":
            mode = "plain" if c == '"' else mode
            backquote ^= c == "`"
        elif c == "'":
            mode = "single"
        elif c == "$" and command.startswith("'", i + 1):
            mode, i = "ansi", i + 1
        elif c == '"':
            mode = "double"
        elif c == "`":
            backquote = not backquote
        elif c == "#" and (i == 0 or command[i - 1] in " \t\n;&|()"):
            end = command.find("\n", i)  # a comment: nothing in it runs
            i = len(command) if end < 0 else end
            continue
        elif command.startswith("<<", i) and not command.startswith("<<<", i):
            delimiter, tabs, i = _heredoc(command, i)
            pending.append((delimiter, tabs))
            continue
        elif c == "\n" and pending:
            i = _heredoc_bodies(command, i + 1, pending, problems)
            continue
        i += 1
    return problems


# -- the glob ----------------------------------------------------------------------------------------------------


def _inside(real_root: Path, path: Path) -> bool:
    real = os.path.realpath(path)
    return real.startswith(str(real_root) + os.sep)


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def project_glob(root: Path, pattern: str, *, field: str = "glob") -> list[str]:
    """The regular files inside the project that `pattern` matches (glob syntax: `*`, `?`, `[...]` within a name,
    `**` for any number of directories; names starting with `.` only where the pattern's name does), as relative
    POSIX paths, sorted. Nothing outside the project is listed or returned: a match or a directory whose real path
    leaves it is skipped. `**` does not descend into symlinked directories, so a symlink loop cannot make the walk
    endless; the other names of the pattern may pass through a symlink inside the project (bounded by the
    pattern's length). At most MAX_GLOB_ENTRIES entries are looked at: a wider glob is refused."""
    expected = "a glob of files relative to the project root (e.g. src/**/*.py), without '..'"
    if re.match(r"^(/|[A-Za-z]:)", pattern):
        raise InvalidArgument(field, expected, pattern)
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidArgument(field, expected, pattern)
    real_root = Path(os.path.realpath(root))
    found: set[str] = set()
    seen = [0]

    def entries(directory: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as listing:
                listed = sorted(listing, key=lambda e: e.name)
        except OSError:
            return []
        seen[0] += len(listed)
        if seen[0] > MAX_GLOB_ENTRIES:
            raise InvalidArgument(field, f"a glob that looks at most {MAX_GLOB_ENTRIES} files and directories; "
                                  "narrow it (src/**/*.py rather than **/*)", pattern)
        return listed

    def take(rel: tuple[str, ...]) -> None:
        path = real_root.joinpath(*rel)
        if _regular(path) and _inside(real_root, path):
            found.add("/".join(rel))

    def visit(rel: tuple[str, ...], i: int) -> None:
        segment, last = parts[i], i == len(parts) - 1
        here = real_root.joinpath(*rel)
        if segment == "**":
            if not last:
                visit(rel, i + 1)
            for entry in entries(here):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    visit((*rel, entry.name), i)
                elif last:
                    take((*rel, entry.name))
            return
        if globbing.has_magic(segment):
            names = [e.name for e in entries(here) if fnmatch.fnmatchcase(e.name, segment)
                     and (segment.startswith(".") or not e.name.startswith("."))]
        else:
            names = [segment]
        for name in names:
            if last:
                take((*rel, name))
            elif (here / name).is_dir() and _inside(real_root, here / name):
                visit((*rel, name), i + 1)

    visit((), 0)
    return sorted(found)

