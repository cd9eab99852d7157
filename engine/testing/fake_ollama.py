"""A fake `ollama` executable for tests: `ollama serve` runs the Ollama double on OLLAMA_HOST's port.

`write_fake_ollama(bin_dir)` writes an `ollama` script into `bin_dir` (put it first on PATH). Its behaviour comes from
the environment it inherits:
- FAKE_OLLAMA_MODE: `serve` (default) answers; `crash` exits at once with a message on stderr; `hang` never listens.
- FAKE_OLLAMA_DELAY: seconds to wait before listening (proves the caller waits for the server).
- FAKE_OLLAMA_MODELS / FAKE_OLLAMA_REGISTRY: comma-separated model names present / pullable.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from pathlib import Path

__all__ = ["free_port", "main", "write_fake_ollama"]

_ROOT = Path(__file__).resolve().parents[2]
"""The directory that holds the `engine` package: the script imports the double from there, whatever its cwd."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_fake_ollama(bin_dir: Path) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "ollama"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(_ROOT)!r})\n"
        "from engine.testing.fake_ollama import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    script.chmod(0o755)
    return script


def _names(variable: str) -> list[str]:
    return [n for n in os.environ.get(variable, "").split(",") if n]


def main(argv: list[str]) -> int:
    if argv[:1] != ["serve"]:
        sys.stderr.write(f"fake ollama: only `serve` is implemented, got {argv}\n")
        return 2
    mode = os.environ.get("FAKE_OLLAMA_MODE", "serve")
    sys.stderr.write(f"fake ollama serve: mode {mode}, pid {os.getpid()}\n")
    sys.stderr.flush()
    if mode == "crash":
        sys.stderr.write("Error: listen tcp 127.0.0.1:11434: bind: address already in use\n")
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if mode == "hang":
        stop.wait()
        return 0
    stop.wait(float(os.environ.get("FAKE_OLLAMA_DELAY") or 0))
    if stop.is_set():
        return 0
    from engine.testing.ollama_double import OllamaDouble

    port = int(os.environ["OLLAMA_HOST"].rsplit(":", 1)[1])
    double = OllamaDouble(models=_names("FAKE_OLLAMA_MODELS"), registry=_names("FAKE_OLLAMA_REGISTRY"), port=port)
    with double:
        sys.stderr.write(f"fake ollama listening on {double.url}\n")
        sys.stderr.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
