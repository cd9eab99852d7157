"""CLI commands of the session lifecycle: capability, enable, disable, status."""

from __future__ import annotations

import argparse
from typing import Any

from engine import Engine
from mcp_adapter.cli.output import Result

__all__ = ["register"]


def _status_text(s: dict[str, Any]) -> str:
    model = f"{s['model']}{' (persist)' if s.get('persist') else ''}" if s.get("model") else "none"
    return f"session: {s['state']}\nbackend: {s.get('backend') or 'none'}\nmodel: {model}\nruns active: {s['runs_active']}"


async def status_cmd(engine: Engine, args: argparse.Namespace) -> Result:
    return Result(await engine.status(), _status_text)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[common], help="session state, backend, loaded model, runs in flight")
    p.set_defaults(handler=status_cmd)
