"""CLI commands of the session lifecycle: capability, enable, disable, status."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

import typer

from engine import ANSWER_FORMS, BACKENDS, EnableFailed, Engine
from mcp_adapter.cli.common import JsonOption, ProjectOption, VerboseOption, execute
from mcp_adapter.cli.exit_codes import FAILED, OK, REFUSED
from mcp_adapter.cli.output import Result, progress_bar

__all__ = ["register"]

Backend = Literal[BACKENDS]  # type: ignore[valid-type]  # the engine's tuple is the one list of choices
AnswerForm = Literal[ANSWER_FORMS]  # type: ignore[valid-type]


_SLOTS_FROM = {"setting": "--slots", "server": "the server's /props", "default": "default: the server does not say",
               "gateway": "the gateway's deployments"}


def _gb(value: Any) -> str:
    return f"{value / 1e9:.1f} GB" if isinstance(value, (int, float)) else "?"


def _status_text(s: dict[str, Any]) -> str:
    if s["state"] == "unavailable":
        return f"session: unavailable\nproblem: {s['problem']}\nfix: {s['fix']}"
    model = f"{s['model']}{' (persist)' if s.get('persist') else ''}" if s.get("model") else "none"
    lines = [
        f"session: {s['state']}",
        f"backend: {s.get('backend') or 'none'}",
        f"model: {model}",
    ]
    if "running" in s:  # what the server and the model are doing now, asked at this status
        lines.append(f"server running: {'yes' if s['running'] else 'no'}; model loaded: "
                     f"{'yes' if s.get('model_loaded') else 'no'}")
    if s.get("capabilities"):
        lines.append(f"capabilities: {', '.join(s['capabilities'])}")
    if s.get("num_ctx"):
        lines.append(f"num_ctx: {s['num_ctx']}" + (f" ({s['num_ctx_from']})" if s.get("num_ctx_from") else ""))
    if s.get("slots"):
        lines.append(f"slots: {s['slots']} ({_SLOTS_FROM.get(s.get('slots_from') or '', 'default')})")
    if s.get("context_note"):
        lines.append(f"context: {s['context_note']}")
    for m in s.get("loaded") or []:
        where = f", {_gb(m['size_vram_bytes'])} on the GPU" if m.get("size_vram_bytes") else ""
        lines.append(f"loaded: {m.get('name')}{where}")
    vram = s.get("vram") or {}
    if vram.get("total_bytes"):
        lines.append(f"vram: {_gb(vram.get('free_bytes'))} free of {_gb(vram['total_bytes'])} "
                     f"(from {vram.get('source')})")
    lines.append(f"runs active: {s['runs_active']}")
    if s.get("reason"):
        lines.append(f"reason: {s['reason']}")
    lines += [f"warning: {w['message']}" for w in s.get("warnings") or []]
    return "\n".join(lines)


def _candidate_text(m: dict[str, Any]) -> str:
    size = f"{m['size_gb']:g} GB{' (unconfirmed)' if m.get('size_checked') is False else ''}"
    fit = {True: "fits", False: "too big", None: "no GPU"}[m["fits"]]
    pulled = {True: "pulled", False: "not pulled", None: "pulled: unknown"}[m["pulled"]]
    notes = [size, fit, pulled, f"num_ctx {m['num_ctx']}"] + (["thinking"] if m.get("thinking") else [])
    if m.get("capabilities"):
        notes.append(f"capabilities {'/'.join(m['capabilities'])}")
    return f"  - {m['model']}: {', '.join(notes)}"


def _capability_text(c: dict[str, Any]) -> str:
    lines = []
    for g in c["gpus"]:
        lines.append(f"gpu {g['index']}: {g['name']}, {_gb(g['free_bytes'])} free of {_gb(g['total_bytes'])} "
                     f"({g.get('source')}{', driver ' + str(g['driver']) if g.get('driver') else ''})")
    memory = c.get("memory") or {}
    if not c["gpus"]:
        lines.append("gpu: none (CPU only)" if memory.get("source") != "server" else "gpu: the server's (remote)")
    lines += [f"  {name}: {result}" for name, result in (memory.get("probes") or {}).items()]
    if memory.get("basis"):
        lines.append(f"memory ({memory.get('source')}{', unified' if memory.get('unified') else ''}): "
                     f"{memory['basis']}")
    o = c["ollama"]
    lines.append(f"ollama: {'running ' + str(o['version']) if o['running'] else 'not running'}, "
                 f"{'installed' if o['installed'] else 'not installed'} ({o['url']})")
    lines.append(f"models: {', '.join(m['name'] for m in c['models']) or 'none'}")
    if c.get("recommended_model"):
        lines.append(f"recommended: {c['recommended_model']}{' (pulled)' if c.get('recommended_pulled') else ''}")
    if c.get("candidates"):
        lines.append(f"candidates for this VRAM (table of {c.get('table_checked')}):")
        lines += [_candidate_text(m) for m in c["candidates"]]
    lines.append(f"backend: {c['backend'] or 'none'}; can enable: {'yes' if c['can_enable'] else 'no'}")
    lines += [f"  - {r}" for r in c["reasons"]]
    return "\n".join(lines)


async def _status(engine: Engine) -> Result:
    status = await engine.status()
    # Unavailable (a damaged database): the status says what to do; the exit code tells a script it cannot go on.
    return Result(status, _status_text, exit_code=REFUSED if status["state"] == "unavailable" else OK)


async def _capability(engine: Engine) -> Result:
    return Result(await engine.capability(), _capability_text)


async def _enable(
    engine: Engine, *, llm: str, backend: str | None, slots: int | None, answer_form: str | None,
) -> Result:
    try:
        with progress_bar() as progress:
            status = await engine.enable(llm=llm, backend=backend, slots=slots, answer_form=answer_form,
                                         progress=progress)
    except EnableFailed as exc:
        # The status (state failed, reason) is still the result; the exit code says it failed. The text says the
        # reason once: the status's own `reason:` line would repeat the first line.
        return Result({**exc.status, "error": exc.reason},
                      lambda s: f"enable failed: {s['error']}\n{_status_text({**s, 'reason': None})}", exit_code=FAILED)
    return Result(status, _status_text)


async def _disable(engine: Engine, *, stop_server: bool) -> Result:
    with progress_bar() as progress:
        status = await engine.disable(stop_server=stop_server, progress=progress)
    return Result(status, _status_text)


def status(
    ctx: typer.Context, *, project: ProjectOption = None, as_json: JsonOption = False, verbose: VerboseOption = False
) -> None:
    """Session state, backend, loaded model, runs in flight."""
    execute(ctx, _status, project=project, as_json=as_json, verbose=verbose)


def capability(
    ctx: typer.Context, *, project: ProjectOption = None, as_json: JsonOption = False, verbose: VerboseOption = False
) -> None:
    """GPUs and VRAM, Ollama installed/running, models present, the recommended model and the other candidates."""
    execute(ctx, _capability, project=project, as_json=as_json, verbose=verbose)


def enable(
    ctx: typer.Context,
    *,
    llm: Annotated[str, typer.Option(
        "--llm", metavar="SPEC",
        help="`true` (default model), MODEL, or MODEL:persist (keep it loaded after disable)")] = "true",
    backend: Annotated[Backend | None, typer.Option(
        "--backend", show_default=False,
        help="default: $LOCAL_LLM_BACKEND, else Ollama when reachable or installed, else embedded")] = None,
    slots: Annotated[int | None, typer.Option(
        "--slots", metavar="N", show_default=False,
        help="generations at once on the backend (default: what the server says, llama.cpp's /props, else 1)")] = None,
    answer_form: Annotated[AnswerForm | None, typer.Option(
        "--answer-form", show_default=False,
        help="how the model answers in this session: edits (search/replace blocks), whole (each file complete in a "
             "fenced block) or json (whole files in JSON); default: by the rule `status` shows")] = None,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Start the backend if needed, pull and load the model, mark the session loaded."""
    execute(ctx, partial(_enable, llm=llm, backend=backend, slots=slots, answer_form=answer_form), project=project,
            as_json=as_json, verbose=verbose)


def disable(
    ctx: typer.Context,
    *,
    stop_server: Annotated[bool, typer.Option("--stop-server", help="stop `ollama serve` too")] = False,
    project: ProjectOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Unload the model (unless persist), back to idle."""
    execute(ctx, partial(_disable, stop_server=stop_server), project=project, as_json=as_json, verbose=verbose)


def register(app: typer.Typer) -> None:
    for command in (status, capability, enable, disable):
        app.command()(command)
