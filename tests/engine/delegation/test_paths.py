"""engine/delegation/paths.py: one identity per output file, and the protected paths (issue #10, point 3)."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from engine.delegation.paths import (
    CONFIG_RULES,
    HOOKS_RULE,
    ProtectedPath,
    Protection,
    canonical_relative,
    check_output,
    directory_ignores_case,
    file_kind,
    output_identity,
)
from engine.errors import InvalidArgument

__all__: list[str] = []


def _ignoring_case(directory: Path) -> bool:
    """A case-insensitive file system (macOS, Windows), which this Linux machine cannot mount: every directory."""
    return True


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("a.py", "a.py"), ("./a.py", "a.py"), ("src//a.py", "src/a.py"), ("src\\a.py", "src/a.py"),
     ("./src/./b\\\\c//d.py", "src/b/c/d.py"), ("dir/", "dir"), ("a/../b", "a/../b")],
)
def test_every_spelling_of_a_path_has_one_canonical_form(spelling: str, canonical: str) -> None:
    assert canonical_relative(spelling) == canonical


def test_spellings_and_symlinks_of_one_file_share_its_identity_key(project_dir: Path) -> None:
    (project_dir / "src").mkdir()
    (project_dir / "src" / "a.py").write_text("x\n")
    (project_dir / "alias").symlink_to("src")
    (project_dir / "b.py").symlink_to("src/a.py")
    identities = [output_identity(project_dir, s) for s in ("src/a.py", "./src//a.py", "src\\a.py", "alias/a.py",
                                                              "b.py")]
    assert {i.key for i in identities} == {"src/a.py"}
    assert {i.real for i in identities} == {(project_dir / "src" / "a.py").resolve()}
    assert [i.relative for i in identities] == ["src/a.py", "src/a.py", "src/a.py", "alias/a.py", "b.py"]
    assert output_identity(project_dir, "src/A.py").key == "src/A.py"  # case matters on this file system


def test_on_a_case_insensitive_file_system_names_differing_in_case_are_one_file(project_dir: Path) -> None:
    (project_dir / "Src").mkdir()
    upper = output_identity(project_dir, "Src/New/File.PY", ignores_case=_ignoring_case)
    lower = output_identity(project_dir, "src/new/file.py", ignores_case=_ignoring_case)
    assert upper.key == lower.key == "src/new/file.py"
    assert upper.relative == "Src/New/File.PY"  # the spelling asked for is kept for the run


def test_the_case_probe_finds_this_file_system_case_sensitive_and_caches_per_directory(project_dir: Path) -> None:
    (project_dir / "Readme.md").write_text("x")
    empty = project_dir / "Empty"
    empty.mkdir()
    assert directory_ignores_case(project_dir) is False
    assert directory_ignores_case(empty) is False  # nothing inside to probe: its own name is asked in its parent
    # A hard link with the swapped name is a second real entry, not the file system ignoring case.
    os.link(project_dir / "Readme.md", project_dir / "rEADME.MD")
    fresh = project_dir / "Linked"
    fresh.mkdir()
    os.link(project_dir / "Readme.md", fresh / "Name")
    os.link(project_dir / "Readme.md", fresh / "nAME")
    assert directory_ignores_case(fresh) is False


PROTECTED = [
    (".claude/workflow/state.db", ".claude/workflow/**"),
    (".claude/workflow/new.txt", ".claude/workflow/**"),
    ("./.claude//workflow/state.db", ".claude/workflow/**"),
    (".claude\\workflow\\state.db", ".claude/workflow/**"),
    (".CLAUDE/Workflow/state.db", ".claude/workflow/**"),
    ("sub/.claude/workflow/state.db", ".claude/workflow/**"),
    (".git/config", ".git/**"),
    (".git/hooks/pre-commit", ".git/**"),
    (".git", ".git/**"),
    (".GIT/hooks/pre-commit", ".git/**"),
    ("vendor/lib/.git/hooks/post-checkout", ".git/**"),
    (".git./config", ".git/**"),
    (".g\u200cit/config", ".git/**"),
    ("git~1/config", ".git/**"),
]


@pytest.mark.parametrize(("spelling", "rule"), PROTECTED)
def test_the_engine_state_and_git_are_never_outputs_in_any_spelling_even_with_the_opt_in(
    project_dir: Path, spelling: str, rule: str
) -> None:
    with pytest.raises(ProtectedPath) as caught:
        check_output(project_dir, spelling, field="output_files[0].path", allow_config_writes=True)
    assert caught.value.rule.pattern.startswith(rule) and not caught.value.rule.opt_in
    assert str(caught.value).startswith(f"output_files[0].path: {spelling!r}")
    assert f"rule `{caught.value.rule.pattern}`" in str(caught.value) and "never an output" in str(caught.value)


CONFIG = [".claude/settings.json", ".claude/settings.local.json", ".claude/commands/workflow/implement.md",
          ".claude/skills/x/SKILL.md", ".claude/agents/a.md", ".claude/hooks/pre.sh", ".mcp.json", ".gitattributes",
          ".gitmodules", ".envrc", ".pre-commit-config.yaml", ".github/workflows/ci.yml", "pkg/.envrc",
          ".Claude/Settings.JSON", "./.github//workflows\\release.yml"]


@pytest.mark.parametrize("spelling", CONFIG)
def test_configuration_that_runs_code_is_an_output_only_with_the_opt_in(project_dir: Path, spelling: str) -> None:
    with pytest.raises(ProtectedPath) as caught:
        check_output(project_dir, spelling, field="output_files[0].path", allow_config_writes=False)
    assert caught.value.rule in CONFIG_RULES
    assert "allow_config_writes=true (--allow-config-writes)" in str(caught.value)
    allowed = check_output(project_dir, spelling, field="output_files[0].path", allow_config_writes=True)
    assert allowed.relative == canonical_relative(spelling)


def test_every_configuration_rule_of_the_design_is_listed() -> None:
    assert {r.pattern for r in CONFIG_RULES} == {
        ".claude/settings.json", ".claude/settings.local.json", ".claude/commands/**", ".claude/skills/**",
        ".claude/agents/**", ".claude/hooks/**", ".mcp.json", ".gitattributes", ".gitmodules", ".envrc",
        ".pre-commit-config.yaml", ".github/workflows/**"}


def test_a_symlinked_claude_directory_does_not_open_the_journal_to_its_real_name(project_dir: Path) -> None:
    # The issue: with `.claude` a symlink, the model's answer overwrote state.db through the link's target.
    (project_dir / "dotclaude" / "workflow").mkdir(parents=True)
    (project_dir / "dotclaude" / "workflow" / "state.db").write_bytes(b"journal")
    (project_dir / ".claude").symlink_to("dotclaude")
    for spelling in ("dotclaude/workflow/state.db", "dotclaude/settings.json"):
        with pytest.raises(ProtectedPath, match=r"\(it is '\.claude/"):
            check_output(project_dir, spelling, field="f", allow_config_writes=False)
    with pytest.raises(ProtectedPath, match="never an output"):
        check_output(project_dir, ".claude/workflow/state.db", field="f", allow_config_writes=True)
    assert check_output(project_dir, "dotclaude/notes.md", field="f", allow_config_writes=False).key == \
        "dotclaude/notes.md"


def test_symlinks_into_git_and_git_directories_under_other_names_are_refused(project_dir: Path) -> None:
    for git_dir in (project_dir / ".git", project_dir / "elsewhere" / "repo.git"):
        (git_dir / "objects").mkdir(parents=True)
        (git_dir / "refs").mkdir()
        (git_dir / "HEAD").write_text("ref: refs/heads/main\n")
    (project_dir / "g").symlink_to(".git")
    (project_dir / "hooks").symlink_to(".git/hooks", target_is_directory=True)
    with pytest.raises(ProtectedPath, match=r"\(it is '\.git/config'\)"):
        check_output(project_dir, "g/config", field="f", allow_config_writes=True)
    with pytest.raises(ProtectedPath, match=r"\(it is '\.git/hooks/pre-commit'\)"):
        check_output(project_dir, "hooks/pre-commit", field="f", allow_config_writes=True)
    with pytest.raises(ProtectedPath, match="inside the git directory 'elsewhere/repo.git'"):
        check_output(project_dir, "elsewhere/repo.git/hooks/pre-push", field="f", allow_config_writes=True)


def test_a_never_rule_wins_over_an_opt_in_one_reached_through_a_symlink(project_dir: Path) -> None:
    (project_dir / ".git" / "hooks").mkdir(parents=True)
    (project_dir / ".claude").mkdir()
    (project_dir / ".claude" / "hooks").symlink_to("../.git/hooks")
    with pytest.raises(ProtectedPath) as caught:
        check_output(project_dir, ".claude/hooks/pre-commit", field="f", allow_config_writes=True)
    assert caught.value.rule.pattern.startswith(".git/")


def test_a_case_changed_alias_of_the_journal_is_refused_where_case_is_ignored(project_dir: Path) -> None:
    (project_dir / "conf" / "workflow").mkdir(parents=True)
    (project_dir / ".claude").symlink_to("conf")
    protection = Protection.of(project_dir, ignores_case=_ignoring_case)
    with pytest.raises(ProtectedPath, match="never an output"):
        check_output(project_dir, "CONF/Workflow/state.db", field="f", allow_config_writes=True,
                     protection=protection)


def test_ordinary_outputs_pass_and_unwritable_shapes_are_still_refused(project_dir: Path) -> None:
    (project_dir / "dir").mkdir()
    (project_dir / "file.txt").write_text("x")
    for fine in ("src/gen.py", ".github/CODEOWNERS", ".claude/notes.md", "docs/.gitignore", "gitdir/x", ".gitx/y"):
        assert check_output(project_dir, fine, field="f", allow_config_writes=False).relative == fine
    for bad, expected in (("dir", "not a directory"), ("file.txt/x", "is a file"), ("../x", "inside the project")):
        with pytest.raises(InvalidArgument, match=expected):
            check_output(project_dir, bad, field="f", allow_config_writes=False)


# -- issue 19 points 6 and 7: git's hooks directory, and outputs that are not regular files ----------------------


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.mark.parametrize("spelling", [".husky/_/pre-commit", ".husky/pre-commit", "./.husky//_/h"])
def test_the_hooks_directory_git_is_set_to_and_husky_parent_are_outputs_only_with_the_opt_in(
    project_dir: Path, spelling: str
) -> None:
    _git(project_dir, "init", "-q")
    _git(project_dir, "config", "core.hooksPath", ".husky/_")
    (project_dir / ".husky" / "_").mkdir(parents=True)
    with pytest.raises(ProtectedPath) as caught:
        check_output(project_dir, spelling, field="output_files[0].path", allow_config_writes=False)
    assert caught.value.rule is HOOKS_RULE and "allow_config_writes" in str(caught.value)
    assert "where git runs hooks from" in str(caught.value)
    assert check_output(project_dir, spelling, field="f", allow_config_writes=True).real.is_relative_to(
        os.path.realpath(project_dir / ".husky"))


def test_a_plain_hooks_directory_protects_itself_but_not_its_parent(project_dir: Path) -> None:
    _git(project_dir, "init", "-q")
    _git(project_dir, "config", "core.hooksPath", "tools/githooks")
    with pytest.raises(ProtectedPath):
        check_output(project_dir, "tools/githooks/pre-push", field="f", allow_config_writes=False)
    outside = check_output(project_dir, "tools/build.py", field="f", allow_config_writes=False)
    assert outside.relative == "tools/build.py"


def test_without_a_hooks_setting_or_a_repository_ordinary_paths_pass(project_dir: Path) -> None:
    assert check_output(project_dir, ".husky/pre-commit", field="f", allow_config_writes=False)
    _git(project_dir, "init", "-q")
    assert check_output(project_dir, ".husky/pre-commit", field="f", allow_config_writes=False)
    with pytest.raises(ProtectedPath):  # the default hooks directory is git's own: never
        check_output(project_dir, ".git/hooks/pre-commit", field="f", allow_config_writes=True)


def test_a_fifo_or_socket_at_an_output_path_is_refused_at_request_time_without_opening_it(project_dir: Path) -> None:
    os.mkfifo(project_dir / "pipe.py")  # opening it for reading would block until a writer came
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(project_dir / "sock.py"))
    server.close()
    (project_dir / "link.py").symlink_to("pipe.py")
    for name, kind in (("pipe.py", "a FIFO"), ("sock.py", "a socket"), ("link.py", "a FIFO")):
        with pytest.raises(InvalidArgument, match=f"a regular file \\(or none yet\\), not {kind}"):
            check_output(project_dir, name, field="output_files[0].path", allow_config_writes=False)


def test_a_device_at_an_output_path_is_refused_at_request_time(project_dir: Path) -> None:
    try:
        os.mknod(project_dir / "dev.py", 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("this machine does not let the test make a device node")
    assert file_kind(project_dir / "dev.py") == "a character device"
    with pytest.raises(InvalidArgument, match="not a character device"):
        check_output(project_dir, "dev.py", field="output_files[0].path", allow_config_writes=False)


def test_a_hooks_setting_made_after_the_cached_answer_expires_is_seen(
    project_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.delegation import git_hooks

    _git(project_dir, "init", "-q")
    assert check_output(project_dir, "hooks/pre-commit", field="f", allow_config_writes=False)
    _git(project_dir, "config", "core.hooksPath", "hooks")
    monkeypatch.setattr(git_hooks, "CACHE_S", 0.0)  # as if CACHE_S had passed
    with pytest.raises(ProtectedPath):
        check_output(project_dir, "hooks/pre-commit", field="f", allow_config_writes=False)
