from __future__ import annotations

from pathlib import Path

import pytest

from engine.delegation.scoring import BASE_SCORE, HISTORY_MIN_RUNS, SIGNALS, THRESHOLD, history_adjustment, score_task


def _signals(analysis) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {r.signal: r.weight for r in analysis.reasons}


def test_the_seeds_example_recommends_delegate() -> None:
    analysis = score_task("Generate Express CRUD routes for User model", output_files=["models/user.js"])
    assert analysis.recommendation == "delegate"
    assert analysis.score > THRESHOLD
    assert _signals(analysis) == {"pattern-based generation": 0.3, "single output file": 0.2}


def test_context_files_are_not_outputs() -> None:
    one = score_task("Generate Express CRUD routes for User model", files=["models/user.js"])
    many = score_task("Add a helper", files=["a.py", "b.py", "c.py"])
    assert _signals(one) == {"pattern-based generation": 0.3} and _signals(many) == {}


@pytest.mark.parametrize("task", ["Fix the AuthService login", "Rotate the auth_token daily", "Add authMiddleware",
                                  "Rename OAuthClient", "Check the JWTToken expiry"])
def test_identifiers_are_split_on_camel_case_and_underscores_before_whole_word_matching(task: str) -> None:
    assert _signals(score_task(task, output_files=["a", "b"]))["security-related"] == -0.25


def test_splitting_identifiers_does_not_match_inside_a_word() -> None:
    for task in ("Add an author field", "Rename authorName", "Fill the author_id column", "Add AuthorList"):
        assert "security-related" not in _signals(score_task(task, output_files=["a", "b"])), task


def test_the_scoring_docs_list_every_signal_with_its_weight_and_the_threshold() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "scoring.md").read_text()
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in docs.splitlines()
            if line.startswith("| ") and line.count("|") >= 4}
    for signal in SIGNALS:
        assert rows.get(signal.name) == f"{signal.weight:+g}", signal.name
    assert rows.get("single output file") == "+0.2" and rows.get("multi-file coordination") == "-0.3"
    assert f"threshold {THRESHOLD}" in docs and f"base {BASE_SCORE}" in docs and "delegation history" in rows


@pytest.mark.parametrize(
    ("task", "outputs", "signal", "weight"),
    [
        ("Write boilerplate for the config loader", ["a.py", "b.py"], "pattern-based generation", 0.3),
        ("Scaffold a new CLI package", ["a.py", "b.py"], "pattern-based generation", 0.3),
        ("Add the missing parser", ["parser.py"], "single output file", 0.2),
        ("Write unit tests for the parser", ["a.py", "b.py"], "test generation", 0.2),
        ("Add a spec for the reducer", ["a.py", "b.py"], "test generation", 0.2),
        ("Design the plugin system", ["a.py", "b.py"], "architecture decision", -0.4),
        ("Decide the architecture of the queue", ["a.py", "b.py"], "architecture decision", -0.4),
        ("Add auth middleware", ["a.py", "b.py"], "security-related", -0.25),
        ("Improve the security headers", ["a.py", "b.py"], "security-related", -0.25),
        ("Encrypt the cache entries", ["a.py", "b.py"], "security-related", -0.25),
        ("Split the helpers", ["a.py", "b.py", "c.py"], "multi-file coordination", -0.3),
    ],
)
def test_each_seed_signal_adds_its_weight_to_the_base(
    task: str, outputs: list[str], signal: str, weight: float,
) -> None:
    analysis = score_task(task, output_files=outputs)
    signals = _signals(analysis)
    assert signals[signal] == weight
    assert analysis.score == pytest.approx(max(0.0, min(1.0, BASE_SCORE + sum(signals.values()))))


def test_words_are_matched_whole_so_author_is_not_security_but_authorize_is() -> None:
    assert "security-related" not in _signals(score_task("Add an author field to posts", output_files=["a", "b"]))
    assert "security-related" in _signals(score_task("Authorize admins on delete", output_files=["a", "b"]))
    assert "test generation" not in _signals(score_task("Update the latest release notes", output_files=["a", "b"]))
    assert "architecture decision" not in _signals(score_task("Fix the designated handler", output_files=["a", "b"]))


def test_the_implied_signals_push_in_the_seeds_direction() -> None:
    assert _signals(score_task("Add docstrings to utils.py", output_files=["a", "b"]))["documentation"] > 0
    assert _signals(score_task("Rename fooBar to foo_bar", output_files=["a", "b"]))["mechanical refactoring"] > 0
    assert _signals(score_task("Translate this module to Rust", output_files=["a", "b"]))[
        "translation between languages"] > 0
    assert _signals(score_task("Somehow make it faster", output_files=["a", "b"]))["ambiguous requirements"] < 0
    assert _signals(score_task("Update calls across the codebase", output_files=["a", "b"]))[
        "deep project context"] < 0


def test_task_type_raises_its_signal_without_the_keyword() -> None:
    assert "test generation" in _signals(score_task("Cover parse()", task_type="test", output_files=["a", "b"]))
    assert "documentation" in _signals(score_task("Cover parse()", task_type="docs", output_files=["a", "b"]))


def test_the_score_stays_within_zero_and_one() -> None:
    low = score_task("Design the auth architecture and encrypt everything across the codebase somehow",
                     output_files=["a", "b", "c", "d"])
    high = score_task("Generate CRUD boilerplate tests and docstrings", output_files=["a"], task_type="test")
    assert low.score == 0.0 and low.recommendation == "keep"
    assert high.score == 1.0 and high.recommendation == "delegate"


def test_a_score_of_exactly_the_threshold_is_kept() -> None:
    # base 0.5 + 0.3 (CRUD) - 0.2 (ambiguous) = 0.6: not above the threshold.
    analysis = score_task("CRUD endpoints, maybe", output_files=["a", "b"])
    assert analysis.score == pytest.approx(0.6)
    assert analysis.recommendation == "keep"


def _runs(task_type: str, passed: int, failed: int) -> list[dict[str, object]]:
    return [{"event": "run", "task_type": task_type, "verification_passed": True}] * passed + [
        {"event": "run", "task_type": task_type, "verification_passed": False}] * failed


def test_history_moves_the_score_only_once_enough_runs_of_the_type_finished() -> None:
    few = _runs("test", HISTORY_MIN_RUNS - 1, 0)
    assert history_adjustment(few, "test") is None
    good = score_task("Add a helper", output_files=["a", "b"], task_type="generate",
                      history=_runs("generate", 10, 0))
    bad = score_task("Add a helper", output_files=["a", "b"], task_type="generate",
                     history=_runs("generate", 0, 10) + _runs("test", 10, 0))
    assert _signals(good)["delegation history"] > 0 > _signals(bad)["delegation history"]
    assert good.score > bad.score
    assert "0 of 10" in next(r.detail for r in bad.reasons if r.signal == "delegation history")
