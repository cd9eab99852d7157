"""The plugin's installer (mcp_adapter/plugin_bootstrap.py) as Claude Code runs it: a real `python -I` subprocess that
builds a real virtual environment with venv + pip in a plugin data directory.

The plugin it installs is a small stand-in built by an in-tree PEP 517 backend, so pip needs no package index (and
these tests no network); the stand-in's `python -m mcp_adapter` prints what it was started with. The backend counts its
builds in a file and can be held at a gate file, which is how the tests see one install, not two."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mcp_adapter import plugin_bootstrap
from mcp_adapter.plugin_bootstrap import network_problem, server_env, source_key

BOOTSTRAP = Path(plugin_bootstrap.__file__)

BACKEND = '''
import base64, hashlib, os, time, zipfile
from pathlib import Path

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    with open(os.environ["FAKE_BUILD_COUNTER"], "a") as counter:
        counter.write("built\\n")
    gate = os.environ.get("FAKE_BUILD_GATE")
    deadline = time.monotonic() + 120
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)
    requires = "".join(f"Requires-Dist: {r}\\n" for r in Path("requires.txt").read_text().split())
    files = {
        "mcp_adapter/__init__.py": b"",
        "mcp_adapter/__main__.py": Path("mcp_adapter/__main__.py").read_bytes(),
        "fake_plugin-1.0.dist-info/METADATA":
            f"Metadata-Version: 2.1\\nName: fake-plugin\\nVersion: 1.0\\n{requires}".encode(),
        "fake_plugin-1.0.dist-info/WHEEL":
            b"Wheel-Version: 1.0\\nGenerator: fake\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    record = ""
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{name},sha256={digest},{len(data)}\\n"
    files["fake_plugin-1.0.dist-info/RECORD"] = (record + "fake_plugin-1.0.dist-info/RECORD,,\\n").encode()
    name = "fake_plugin-1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return name
'''

MAIN = '''
import json, os, sys
print(json.dumps({"version": VERSION, "argv": sys.argv[1:], "isolated": sys.flags.isolated,
                  "env": {k: v for k, v in os.environ.items() if k.startswith(("LOCAL_LLM", "OLLAMA"))}}))
'''


def _plugin(root: Path, *, version: int = 1, requires: str = "") -> Path:
    (root / "mcp_adapter").mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "fakebackend"\nbackend-path = ["."]\n', encoding="utf-8")
    (root / "fakebackend.py").write_text(BACKEND, encoding="utf-8")
    (root / "requires.txt").write_text(requires, encoding="utf-8")
    (root / "mcp_adapter" / "__main__.py").write_text(MAIN.replace("VERSION", str(version)), encoding="utf-8")
    shutil.copy(BOOTSTRAP, root / "mcp_adapter" / "plugin_bootstrap.py")
    return root


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    return _plugin(tmp_path / "cache" / "workflow" / "1.0")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), "CLAUDE_PLUGIN_DATA": str(tmp_path / "data"),
        "FAKE_BUILD_COUNTER": str(tmp_path / "builds"), "LOCAL_LLM_PLUGIN_INSTALLER": "pip",
        # No index, no configuration of this machine: nothing can be fetched, which the stand-in does not need.
        "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def _start(plugin: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-I", str(plugin / "mcp_adapter" / "plugin_bootstrap.py"), *args],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _run(plugin: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-I", str(plugin / "mcp_adapter" / "plugin_bootstrap.py"), *args],
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240, check=False)


def _builds(env: dict[str, str]) -> int:
    counter = Path(env["FAKE_BUILD_COUNTER"])
    return len(counter.read_text().splitlines()) if counter.exists() else 0


def _envs(env: dict[str, str]) -> list[str]:
    return sorted(p.name for p in (Path(env["CLAUDE_PLUGIN_DATA"]) / "envs").iterdir() if p.is_dir())


def test_serve_installs_on_the_first_start_then_execs_the_server_and_a_second_start_reuses_the_install(
    plugin: Path, env: dict[str, str]
) -> None:
    done = _run(plugin, {**env, "LOCAL_LLM_PROJECT": "/work/project", "LOCAL_LLM_PLUGIN_URL": "http://gpu:11434"},
                "serve", "-v")
    assert done.returncode == 0, done.stderr
    started = json.loads(done.stdout)  # stdout holds the server's output only: it is the MCP channel
    assert started["version"] == 1 and started["argv"] == ["serve", "-v"] and started["isolated"] == 1
    assert started["env"]["LOCAL_LLM_PROJECT"] == "/work/project" and started["env"]["OLLAMA_HOST"] == "http://gpu:11434"
    assert "installing workflow-local-llm" in done.stderr and "installed in" in done.stderr
    assert _builds(env) == 1 and _envs(env) == [source_key(plugin)]
    again = _run(plugin, env, "serve")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == 1
    assert again.stderr == "" and _builds(env) == 1


def test_two_sessions_starting_at_once_install_once(plugin: Path, env: dict[str, str], tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gated = {**env, "FAKE_BUILD_GATE": str(gate)}
    first = _start(plugin, gated, "install")
    deadline = time.monotonic() + 120
    while _builds(env) == 0:  # the first installer is inside its build, held at the gate
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.05)
    second = _start(plugin, gated, "serve")
    assert second.stderr is not None
    waiting = second.stderr.readline()
    assert "another session is installing the server; waiting" in waiting, waiting
    gate.touch()
    out1, err1 = first.communicate(timeout=240)
    out2, err2 = second.communicate(timeout=240)
    assert first.returncode == 0 and out1 == "", err1
    assert second.returncode == 0 and json.loads(out2)["version"] == 1, err2
    assert _builds(env) == 1 and "installing" not in err2
    assert [p.name for p in (Path(env["CLAUDE_PLUGIN_DATA"]) / "envs").iterdir()] == [source_key(plugin)]


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH (the pip path is tested above)")
def test_with_uv_on_path_uv_builds_the_environment(plugin: Path, env: dict[str, str]) -> None:
    with_uv = {**env, "LOCAL_LLM_PLUGIN_INSTALLER": "", "UV_NO_INDEX": "1", "UV_PYTHON_DOWNLOADS": "never"}
    done = _run(plugin, with_uv, "serve")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1 and _builds(env) == 1
    log = (Path(env["CLAUDE_PLUGIN_DATA"]) / "install.log").read_text()
    assert " venv --quiet --python >=3.11 " in log and " pip install --python " in log


def test_a_server_killed_at_claude_code_s_start_up_limit_leaves_the_install_running_for_the_next_start(
    plugin: Path, env: dict[str, str], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    launcher = _start(plugin, {**env, "FAKE_BUILD_GATE": str(gate)}, "serve")
    deadline = time.monotonic() + 120
    while _builds(env) == 0:
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.05)
    launcher.kill()  # what Claude Code does after 30 s without an answer
    launcher.communicate(timeout=30)
    gate.touch()
    done = _run(plugin, env, "serve")  # waits for the detached install, then reuses it
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1 and _builds(env) == 1
    # only the killed launcher's progress file is left (tidy removes it a day later); the second one removed its own
    assert len(list(Path(env["CLAUDE_PLUGIN_DATA"]).glob(".progress-*"))) == 1


def test_an_upgraded_plugin_installs_anew_beside_the_old_environment(
    plugin: Path, env: dict[str, str], tmp_path: Path
) -> None:
    assert _run(plugin, env, "install").returncode == 0
    old = Path(env["CLAUDE_PLUGIN_DATA"]) / "envs" / source_key(plugin)
    upgraded = _plugin(tmp_path / "cache" / "workflow" / "1.1", version=2)  # Claude Code keeps a directory a version
    done = _run(upgraded, env, "serve")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 2 and _builds(env) == 2
    assert old.is_dir() and len(_envs(env)) == 2, "a session still running the old version keeps its environment"


def test_environments_unused_for_a_week_and_half_built_ones_are_removed_and_recent_ones_kept(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    for name in ("current", "recent", "stale", ".partial-x-1"):
        (envs / name).mkdir(parents=True)
        (envs / name / ".last-used").touch()
    week_ago = time.time() - 8 * 24 * 3600
    os.utime(envs / "stale" / ".last-used", (week_ago, week_ago))
    os.utime(envs / "current" / ".last-used", (week_ago, week_ago))
    plugin_bootstrap.tidy(envs, envs / "current")
    assert sorted(p.name for p in envs.iterdir()) == ["current", "recent"]


def test_without_a_network_the_install_fails_in_one_line_that_says_so_and_leaves_nothing_half_built(
    tmp_path: Path, env: dict[str, str]
) -> None:
    plugin = _plugin(tmp_path / "offline", requires="local-llm-test-dependency")
    with socket.socket() as probe:  # a port nothing listens on: the index is unreachable
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    offline = {k: v for k, v in env.items() if k != "PIP_NO_INDEX"}
    offline.update(PIP_INDEX_URL=f"http://127.0.0.1:{port}/simple", PIP_RETRIES="1", PIP_TIMEOUT="5")
    done = _run(plugin, offline, "serve")
    assert done.returncode == 1 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("local-llm plugin: cannot install workflow-local-llm: no network"), done.stderr
    assert os.listdir(Path(env["CLAUDE_PLUGIN_DATA"]) / "envs") == []


def test_serve_without_the_plugin_data_directory_says_where_it_must_run(plugin: Path, env: dict[str, str]) -> None:
    done = _run(plugin, {k: v for k, v in env.items() if k != "CLAUDE_PLUGIN_DATA"}, "serve")
    assert done.returncode == 1 and done.stdout == ""
    assert "$CLAUDE_PLUGIN_DATA is not set" in done.stderr and _builds(env) == 0


def test_the_plugin_options_become_the_engine_s_variables_and_empty_ones_leave_the_user_s() -> None:
    mine = {"OLLAMA_HOST": "http://mine:11434", "LOCAL_LLM_PROJECT": "/p"}
    assert server_env({**mine, "LOCAL_LLM_PLUGIN_BACKEND": "", "LOCAL_LLM_PLUGIN_URL": "",
                       "LOCAL_LLM_PLUGIN_MODEL": "auto"}) == mine
    assert server_env({"LOCAL_LLM_PLUGIN_BACKEND": "openai", "LOCAL_LLM_PLUGIN_URL": "http://box:8080",
                       "LOCAL_LLM_PLUGIN_MODEL": "qwen2.5-coder:7b"}) == {
        "LOCAL_LLM_BACKEND": "openai", "LOCAL_LLM_OPENAI_URL": "http://box:8080", "LOCAL_LLM_MODEL": "qwen2.5-coder:7b"}
    assert server_env({"LOCAL_LLM_PLUGIN_BACKEND": "Auto", "LOCAL_LLM_PLUGIN_URL": "gpu:11434"}) == {
        "OLLAMA_HOST": "gpu:11434"}
    assert server_env({"LOCAL_LLM_PLUGIN_MODEL": "${user_config.model}"}) == {}  # left unresolved: unset


@pytest.mark.parametrize("output", [
    ("WARNING: Retrying ... NewConnectionError('<pip._vendor.urllib3.connection.HTTPConnection>: Failed to establish "
     "a new connection: [Errno 111] Connection refused')"),
    "error: Failed to fetch: `https://pypi.org/simple/mcp/`\n  Caused by: dns error: failed to lookup address",
])
def test_pip_and_uv_words_for_an_unreachable_index_are_recognised(output: str) -> None:
    assert network_problem(output)
    assert not network_problem("ERROR: No matching distribution found for mcp>=2.3 (from versions: 1.0)")


def test_the_source_key_follows_the_package_files_and_ignores_a_checkout_s_leftovers(plugin: Path) -> None:
    key = source_key(plugin)
    (plugin / ".venv" / "bin").mkdir(parents=True)
    (plugin / ".venv" / "bin" / "python").write_text("x")
    (plugin / "mcp_adapter" / "__pycache__").mkdir()
    (plugin / "mcp_adapter" / "__pycache__" / "x.pyc").write_bytes(b"x")
    assert source_key(plugin) == key
    (plugin / "mcp_adapter" / "__main__.py").write_text("changed")
    assert source_key(plugin) != key
