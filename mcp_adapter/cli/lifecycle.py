"""CLI commands of the session lifecycle: capability, enable, disable, status."""

from __future__ import annotations

import argparse
from typing import Any

from engine import BACKENDS, EnableFailed, Engine
from mcp_adapter.cli.output import Result, end_progress_line, terminal_progress

__all__ = ["register"]


def _gb(value: Any) -> str:
    return f"{value / 1e9:.1f} GB" if isinstance(value, (int, float)) else "?"


def _status_text(s: dict[str, Any]) -> str:
    model = f"{s['model']}{' (persist)' if s.get('persist') else ''}" if s.get("model") else "none"
    lines = [
        f"session: {s['state']}",
        f"backend: {s.get('backend') or 'none'}",
        f"model: {model}",
    ]
    if s.get("num_ctx"):
        lines.append(f"num_ctx: {s['num_ctx']}")
    for m in s.get("loaded") or []:
        where = f", {_gb(m['size_vram_bytes'])} on the GPU" if m.get("size_vram_bytes") else ""
        lines.append(f"loaded: {m.get('name')}{where}")
    vram = s.get("vram") or {}
    if vram.get("total_bytes"):
        lines.append(f"vram: {_gb(vram.get('free_bytes'))} free of {_gb(vram['total_bytes'])}")
    lines.append(f"runs active: {s['runs_active']}")
    if s.get("reason"):
        lines.append(f"reason: {s['reason']}")
    return "\n".join(lines)


def _capability_text(c: dict[str, Any]) -> str:
    lines = []
    for g in c["gpus"]:
        lines.append(f"gpu {g['index']}: {g['name']}, {_gb(g['free_bytes'])} free of {_gb(g['total_bytes'])} "
                     f"(driver {g.get('driver')})")
    if not c["gpus"]:
        lines.append("gpu: none (CPU only)")
    o = c["ollama"]
    lines.append(f"ollama: {'running ' + str(o['version']) if o['running'] else 'not running'}, "
                 f"{'installed' if o['installed'] else 'not installed'} ({o['url']})")
    lines.append(f"models: {', '.join(m['name'] for m in c['models']) or 'none'}")
    if c.get("recommended_model"):
        lines.append(f"recommended: {c['recommended_model']}{' (pulled)' if c.get('recommended_pulled') else ''}")
    lines.append(f"backend: {c['backend'] or 'none'}; can enable: {'yes' if c['can_enable'] else 'no'}")
    lines += [f"  - {r}" for r in c["reasons"]]
    return "\n".join(lines)


async def status_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    return Result(await engine.status(), _status_text)


async def capability_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    return Result(await engine.capability(), _capability_text)


async def enable_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    try:
        status = await engine.enable(llm=args.llm, backend=args.backend, progress=terminal_progress())
    except EnableFailed as exc:
        end_progress_line()
        # The status (state failed, reason) is still the result; the exit code says it failed.
        return Result({**exc.status, "error": exc.reason},
                      lambda s: f"enable failed: {s['error']}\n{_status_text(s)}", exit_code=1)
    end_progress_line()
    return Result(status, _status_text)


async def disable_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    status = await engine.disable(stop_server=args.stop_server, progress=terminal_progress())
    end_progress_line()
    return Result(status, _status_text)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[common], help="session state, backend, loaded model, runs in flight")
    p.set_defaults(handler=status_cmd)

    p = sub.add_parser("capability", parents=[common],
                       help="GPUs and VRAM, Ollama installed/running, models present, the recommended model")
    p.set_defaults(handler=capability_cmd)

    p = sub.add_parser("enable", parents=[common],
                       help="start the backend if needed, pull and load the model, mark the session loaded")
    p.add_argument("--llm", metavar="SPEC", default="true",
                   help="`true` (default model), MODEL, or MODEL:persist (keep it loaded after disable)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="default: $LOCAL_LLM_BACKEND, else Ollama when reachable or installed, else embedded")
    p.set_defaults(handler=enable_cmd)

    p = sub.add_parser("disable", parents=[common], help="unload the model (unless persist), back to idle")
    p.add_argument("--stop-server", action="store_true", help="stop `ollama serve` too")
    p.set_defaults(handler=disable_cmd)
