"""B10's figures are counts, not times, so its short form is a test: a 3-minute delegation (time-scaled) costs the
Claude Code orchestrator (a long call, or an MCP task polled by the client) one tool call and one result, against
today's delegate + result polls."""

from __future__ import annotations

from bench import b10_long_calls


def test_a_long_delegation_costs_claude_code_one_call_and_one_result_against_todays_polls() -> None:
    figures = b10_long_calls.run(quick=True)
    assert len(figures) == 4  # Claude Code's long call, then the tasks client
    for calls, tokens in (figures[:2], figures[2:]):
        assert calls.engine == 1 and calls.passed  # one model-visible call
        # 180 s / 40 s: the fifth answer is the first after the end; a loaded machine can only add polls.
        assert calls.baseline >= 5
        assert tokens.passed and tokens.engine < tokens.baseline / 2  # one result, a fraction of the polls' tokens
