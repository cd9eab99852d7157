"""Start the Claude Code plugin's MCP server, installing the package into the plugin's data directory first.

Claude Code installs nothing for a Python plugin, so this file runs with the system's `python3` before the package
exists: standard library only, and syntax that Python 3.9 reads (it finds a 3.11+ interpreter for the install).

    python3 -I plugin_bootstrap.py install      the SessionStart hook: install when needed, print nothing on stdout
    python3 -I plugin_bootstrap.py serve [...]  the MCP server: install when needed, then exec `local-llm serve`

`serve` installs in a detached process: Claude Code gives a server 30 s to answer and kills it then, and a first
install with pip takes longer (about 100 s measured here); the install goes on, and the next start (`/mcp`, the next
session) finds it. The SessionStart hook installs in the same way, with a 600 s limit of its own.

Where: `$CLAUDE_PLUGIN_DATA/envs/<key>/`, one virtual environment per plugin source, `<key>` a digest of the plugin's
files (an upgrade of the plugin has other files, so it installs anew; an unchanged one is reused). uv when it is on
PATH (`uv venv` + `uv pip install`), else `python -m venv`, pip installs uv into it and uv the package (pip alone
where uv has no wheel); never the `embedded` extra. Two sessions starting
at once install once: the installer holds an fcntl lock on `$CLAUDE_PLUGIN_DATA/install.lock`, the loser waits and
then finds the finished environment, which was built under a temporary name and renamed into place only when
complete. An environment no plugin version has started for 7 days (Claude Code's own grace period for an old plugin
version) is removed at the next install. Progress and errors go to stderr, never stdout (stdout is the MCP channel in
`serve` and the model's context in a SessionStart hook); a failed install is one line, which says so when the package
index could not be reached.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

__all__ = [
    "InstallFailed",
    "ensure_installed",
    "find_python",
    "install_detached",
    "installed_env",
    "main",
    "network_problem",
    "server_env",
    "source_key",
    "tidy",
]

DIST = "workflow-local-llm"
MIN_PYTHON = (3, 11)
KEEP_UNUSED_S = 7 * 24 * 3600
MARKER = ".local-llm-install.json"
LAST_USED = ".last-used"
SKIPPED_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", "build", "dist", ".mypy_cache",
                          ".pytest_cache", ".ruff_cache", ".hypothesis"})
"""Not part of the package: a developer's checkout used with `--plugin-dir` has them, a marketplace copy does not."""
NETWORK_SIGNS = (
    "failed to establish a new connection", "temporary failure in name resolution", "name or service not known",
    "nodename nor servname", "network is unreachable", "no route to host", "connection refused",
    "could not fetch url", "connecterror", "connectionerror", "newconnectionerror", "dns error",
    "error sending request", "failed to fetch", "tcp connect error", "connection timed out", "read timed out",
)
"""How pip and uv word an unreachable package index."""


class InstallFailed(Exception):
    """One line for the user: what failed and what to do."""


def _say(message: str) -> None:
    print(f"local-llm plugin: {message}", file=sys.stderr, flush=True)


def _skipped(name: str) -> bool:
    return name in SKIPPED_DIRS or name.endswith((".egg-info", ".pyc"))


def _source_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped(d))
        found.extend(Path(directory, f) for f in files if not _skipped(f))
    return sorted(found)


def source_key(root: Path) -> str:
    """A digest of the files that make the package: a new plugin version (or an edited checkout) has another key."""
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def network_problem(output: str) -> bool:
    lowered = output.lower()
    return any(sign in lowered for sign in NETWORK_SIGNS)


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                              text=True, timeout=30, check=False)
    except OSError:
        return None
    parts = done.stdout.split()
    return (int(parts[0]), int(parts[1])) if done.returncode == 0 and len(parts) == 2 else None


def find_python() -> str | None:
    """An interpreter the package runs on: this one when new enough, else the newest `python3.X` on PATH."""
    if sys.version_info[:2] >= MIN_PYTHON:
        return sys.executable
    for minor in range(20, MIN_PYTHON[1] - 1, -1):
        candidate = shutil.which(f"python3.{minor}")
        if candidate and (_version_of(candidate) or (0, 0)) >= MIN_PYTHON:
            return candidate
    return None


def _run(command: list[str], log: Path) -> None:
    """Run one install step, its output streamed to stderr and appended to the log; InstallFailed when it fails."""
    with log.open("a", encoding="utf-8") as record:
        record.write(f"$ {' '.join(command)}\n")
        record.flush()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, errors="replace")
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            record.write(line)
            lines.append(line)
            print(line, end="", file=sys.stderr, flush=True)
        code = process.wait()
    if code != 0:
        output = "".join(lines)
        if network_problem(output):
            raise InstallFailed(f"cannot install {DIST}: no network (the package index could not be reached); "
                                "connect, then start Claude Code again (or reconnect the server with /mcp)")
        last = next((line.strip() for line in reversed(lines) if line.strip()), "no output")
        raise InstallFailed(f"installing {DIST} failed ({Path(command[0]).name} exited {code}: {last}); "
                            f"the whole log is {log}")


def _installer() -> str:
    chosen = os.environ.get("LOCAL_LLM_PLUGIN_INSTALLER", "").strip()
    if chosen in ("uv", "pip"):
        return chosen
    return "uv" if shutil.which("uv") else "pip"


def _build(root: Path, work: Path, log: Path) -> Path:
    """A complete environment at `work/env`, with the package installed from a copy of `root` at `work/src`."""
    source, target = work / "src", work / "env"
    # A copy: pip and uv build in the source tree (egg-info, build/), and the plugin's own directory is not ours.
    shutil.copytree(root, source, ignore=lambda _d, names: [n for n in names if _skipped(n)])
    if _installer() == "uv":
        uv = shutil.which("uv") or "uv"
        _run([uv, "venv", "--quiet", "--python", f">={MIN_PYTHON[0]}.{MIN_PYTHON[1]}", str(target)], log)
        _run([uv, "pip", "install", "--python", str(target / "bin" / "python"), str(source)], log)
    else:
        python = find_python()
        if python is None:
            raise InstallFailed(f"needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer (python3 is "
                                f"{sys.version.split()[0]}); install a newer Python or uv (https://docs.astral.sh/uv/)")
        _run([python, "-m", "venv", str(target)], log)
        pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
               "--progress-bar", "off"]
        # uv first, into the new environment (one wheel): it fetches the ~45 dependencies in parallel, so the first
        # start fits Claude Code's 30 s (measured: 14 s against 60-100 s for pip alone).
        # pip alone where that fails (no uv wheel for this platform; an index only pip is configured for).
        try:
            _run([*pip, "uv>=0.13.9"], log)
            # --system-certs: the machine's CA store, as pip uses it (a TLS-inspecting proxy's CA lives there).
            _run([str(target / "bin" / "uv"), "pip", "install", "--system-certs", "--python",
                  str(target / "bin" / "python"), str(source)], log)
        except InstallFailed:
            _run([*pip, str(source)], log)
    return target


def _complete(env: Path, key: str) -> bool:
    try:
        marker = json.loads((env / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("key") == key and (env / "bin" / "python").exists()


def tidy(envs: Path, keep: Path) -> None:
    """Under the lock: drop half-built environments (their builder died) and ones unused for KEEP_UNUSED_S, and the
    progress files of launchers killed while they waited."""
    for leftover in envs.parent.glob(".progress-*.txt"):
        if time.time() - leftover.stat().st_mtime > 24 * 3600:
            leftover.unlink(missing_ok=True)
    for entry in envs.iterdir():
        if entry == keep or not entry.is_dir():
            continue
        if entry.name.startswith(".partial-"):
            shutil.rmtree(entry, ignore_errors=True)
            continue
        stamp = entry / LAST_USED
        used = stamp.stat().st_mtime if stamp.exists() else 0.0
        if time.time() - used > KEEP_UNUSED_S:
            shutil.rmtree(entry, ignore_errors=True)


def installed_env(root: Path, data: Path) -> Path | None:
    """The finished environment for the plugin at `root`, marked as used, or None."""
    env = data / "envs" / source_key(root)
    if not _complete(env, env.name):
        return None
    (env / LAST_USED).touch()
    return env


def ensure_installed(root: Path, data: Path) -> Path:
    """The environment for the plugin at `root`, installed into `data` first when it is not there yet."""
    key = source_key(root)
    envs = data / "envs"
    env = envs / key
    if not _complete(env, key):
        envs.mkdir(parents=True, exist_ok=True)
        with (data / "install.lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _say("another session is installing the server; waiting for it")
                fcntl.flock(lock, fcntl.LOCK_EX)
            if not _complete(env, key):  # the other session may have finished it meanwhile
                _install(root, envs, env, key, data / "install.log")
            tidy(envs, env)
    (env / LAST_USED).touch()
    return env


def install_detached(root: Path, data: Path) -> Path:
    """Install in a process of its own session, its output relayed to stderr: Claude Code kills a server that has
    not answered within its start-up limit (30 s), and the install must go on to finish for the next start."""
    data.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".progress-", suffix=".txt", dir=data)
    progress = Path(name)
    try:
        with os.fdopen(fd, "w") as out:
            child = subprocess.Popen([sys.executable, "-I", str(Path(__file__).resolve()), "install"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out,
                                     start_new_session=True)
        lines = _relay(child, progress)
    finally:
        progress.unlink(missing_ok=True)
    env = installed_env(root, data)
    if child.returncode != 0 or env is None:
        last = next((line.strip() for line in reversed(lines) if line.strip()), "the installer ended without output")
        raise InstallFailed(last.removeprefix("local-llm plugin: "))
    return env


def _relay(child: subprocess.Popen[bytes], progress: Path) -> list[str]:
    """Copy what the installer writes to our stderr while it runs; its lines."""
    lines: list[str] = []
    with progress.open(encoding="utf-8", errors="replace") as source:
        while True:
            ended = child.poll() is not None
            chunk = source.read()
            if chunk:
                sys.stderr.write(chunk)
                sys.stderr.flush()
                lines.extend(chunk.splitlines())
            if ended:
                return lines
            time.sleep(0.2)


def _install(root: Path, envs: Path, env: Path, key: str, log: Path) -> None:
    _say(f"installing {DIST} into {env} (first start of this plugin version; up to a few minutes)")
    log.write_text(f"installing {root} into {env}\n", encoding="utf-8")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".partial-{key}-", dir=envs))
    try:
        built = _build(root, work, log)
        (built / MARKER).write_text(json.dumps({"key": key, "source": str(root), "installed_at": time.time()}),
                                    encoding="utf-8")
        if env.exists():  # an incomplete leftover under the final name (a copy by hand): not ours to keep
            shutil.rmtree(env)
        built.rename(env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _say(f"installed in {time.monotonic() - started:.0f} s")


def _option(value: str) -> str:
    """A plugin option's value; a placeholder Claude Code left unresolved counts as unset."""
    value = value.strip()
    return "" if value.startswith("${user_config.") else value


def server_env(environ: dict[str, str]) -> dict[str, str]:
    """The server's environment: the plugin's options (userConfig, passed as LOCAL_LLM_PLUGIN_*) turned into the
    variables the engine reads. An empty option leaves the user's own environment as it is."""
    env = dict(environ)
    backend, url, model = (_option(env.pop(f"LOCAL_LLM_PLUGIN_{key}", "")) for key in ("BACKEND", "URL", "MODEL"))
    backend = backend.lower()
    if backend and backend != "auto":
        env["LOCAL_LLM_BACKEND"] = backend
    if url:
        env["LOCAL_LLM_OPENAI_URL" if backend == "openai" else "OLLAMA_HOST"] = url
    if model and model.lower() not in ("auto", "default", "true"):
        env["LOCAL_LLM_MODEL"] = model
    return env


def _fail(message: str) -> NoReturn:
    _say(message)
    raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ("install", "serve"):
        _fail("usage: plugin_bootstrap.py install | serve [local-llm serve options]")
    root = Path(__file__).resolve().parent.parent
    data_dir = os.environ.get("CLAUDE_PLUGIN_DATA", "").strip()
    if not data_dir:
        _fail("$CLAUDE_PLUGIN_DATA is not set: run this from the Claude Code plugin, or use `pip install` and "
              "`local-llm serve` directly")
    data = Path(data_dir)
    try:
        if args[0] == "install":
            ensure_installed(root, data)
            return 0
        env = installed_env(root, data) or install_detached(root, data)
    except InstallFailed as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot install into {data}: {exc}")
    python = str(env / "bin" / "python")
    # exec: Claude Code's stdio pipes, signals and process id go to the server itself. -I: a project directory that
    # holds an `mcp_adapter/` (this repository's checkout) must not shadow the installed package.
    os.execve(python, [python, "-I", "-m", "mcp_adapter", "serve", *args[1:]], server_env(dict(os.environ)))


if __name__ == "__main__":
    raise SystemExit(main())
