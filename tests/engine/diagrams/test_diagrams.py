from __future__ import annotations

import itertools
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine import Engine
from engine.diagrams import Step, extract, folder_files, render_dot, render_mermaid, render_svg
from states import DELEGATION, MACHINES, SESSION, MachineSpec

DIAGRAMS = Path(__file__).resolve().parents[3] / "diagrams"


def test_the_diagrams_folder_matches_the_declared_machines() -> None:
    expected = folder_files(with_svg=False)
    for name, text in expected.items():
        assert (DIAGRAMS / name).read_text() == text, \
            f"diagrams/{name} drifted: run `python -m engine.diagrams diagrams`"


def test_the_diagrams_folder_holds_exactly_one_mermaid_and_one_svg_file_per_machine_and_the_readme() -> None:
    expected = {*folder_files(with_svg=False), *(f"{kind}.svg" for kind in MACHINES)}
    assert {p.name for p in DIAGRAMS.iterdir()} == expected


SVG, XLINK = "{http://www.w3.org/2000/svg}", "{http://www.w3.org/1999/xlink}"


def _drawn(svg: Path) -> tuple[dict[str, str | None], set[tuple[str, str, str]]]:
    """What an SVG made by graphviz draws: each node with its tooltip, each arrow with its label."""
    nodes: dict[str, str | None] = {}
    arrows: set[tuple[str, str, str]] = set()
    for group in ET.parse(svg).getroot().iter(f"{SVG}g"):
        title = group.findtext(f"{SVG}title") or ""
        if group.get("class") == "node":
            link = group.find(f".//{SVG}a")
            nodes[title] = None if link is None else link.get(f"{XLINK}title")
        elif group.get("class") == "edge":
            source, dest = title.split("->")
            arrows.add((source, dest, " ".join(t.text or "" for t in group.iter(f"{SVG}text"))))
    return nodes, arrows


@pytest.mark.parametrize("spec", list(MACHINES.values()), ids=list(MACHINES))
def test_every_svg_diagram_draws_the_states_descriptions_and_transitions_its_machine_declares(
    spec: MachineSpec,
) -> None:
    # Runs without graphviz too: the drawing is compared with the declaration, not re-rendered.
    diagram = extract(spec)
    nodes, arrows = _drawn(DIAGRAMS / f"{spec.kind}.svg")
    assert nodes == {"__start": None, **{n.name: n.description for n in diagram.nodes}}, (
        f"diagrams/{spec.kind}.svg drifted: run `python -m engine.diagrams diagrams` with graphviz installed")
    initial = {("__start", n.name, "") for n in diagram.nodes if n.initial}
    assert arrows == {(s, d, label) for s, d, label, _ in diagram.arrows()} | initial, (
        f"diagrams/{spec.kind}.svg drifted: run `python -m engine.diagrams diagrams` with graphviz installed")


@pytest.mark.graphviz
def test_the_svg_diagrams_are_present_and_name_every_state() -> None:
    if shutil.which("dot") is None:
        pytest.skip("graphviz is not installed")
    for spec in MACHINES.values():
        svg = (DIAGRAMS / f"{spec.kind}.svg").read_text()
        assert svg == render_svg(extract(spec)), f"diagrams/{spec.kind}.svg drifted"
        for state in spec.states:
            assert f">{state}</text>" in svg


def _has_path(edges: set[tuple[str, str]], chain: list[str]) -> bool:
    """True when each consecutive pair of `chain` is connected by a path in `edges`."""
    def reaches(a: str, b: str) -> bool:
        seen, frontier = {a}, [a]
        while frontier:
            node = frontier.pop()
            for src, dst in edges:
                if src == node and dst not in seen:
                    if dst == b:
                        return True
                    seen.add(dst)
                    frontier.append(dst)
        return False
    return all(reaches(a, b) for a, b in itertools.pairwise(chain))


def test_the_design_chain_from_idle_to_done_appears_in_the_diagrams() -> None:
    session = extract(SESSION)
    run = extract(DELEGATION)
    session_edges = {(e.source, e.dest) for e in session.edges}
    run_edges = {(e.source, e.dest) for e in run.edges}
    assert _has_path(session_edges, ["idle", "starting", "loaded", "delegating"])
    assert _has_path(run_edges, ["delegating", "verifying", "retrying", "delegating", "verifying", "done"])
    mermaid = render_mermaid(run)
    for line in ("verifying --> retrying : verify_failed [has_attempts_left]", "verifying --> done : passed"):
        assert line in mermaid


def test_a_runs_diagram_highlights_its_state_and_numbers_the_steps_it_took(engine: Engine) -> None:
    engine.ctx.runs.create("run-1", {"verify": "true", "attempt": 1, "max_attempts": 2})
    for event in ("start", "generated", "written"):
        engine.ctx.runs.fire("run-1", event)
    engine.ctx.runs.note("run-1", "recover", data={"recoveries": 1})

    mermaid = engine.diagram("delegation", run_id="run-1")
    assert "class verifying current" in mermaid
    assert "pending --> delegating : start (step 1)" in mermaid
    assert "writing --> verifying : written [has_verify] (step 3)" in mermaid
    assert "verifying --> done : passed\n" in mermaid  # not taken: no step number
    assert "class delegating,pending,writing visited" in mermaid

    dot = engine.diagram("delegation", run_id="run-1", fmt="dot")
    assert '"verifying" [tooltip="running the verify command", fillcolor="#fde68a", penwidth=3];' in dot
    assert '"pending" -> "delegating" [label="start (step 1)", penwidth=2.5' in dot


def test_svg_without_graphviz_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install graphviz.*--format mermaid"):
        render_svg(extract(SESSION))


def test_a_step_repeated_on_one_edge_lists_every_step_number() -> None:
    path = [
        Step(1, "retrying", "delegating", "regenerate"),
        Step(2, "delegating", "writing", "generated"),
        Step(3, "retrying", "delegating", "regenerate"),
    ]
    dot = render_dot(extract(DELEGATION, current="delegating", path=path))
    assert 'label="regenerate (step 1, 3)"' in dot
