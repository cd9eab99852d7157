"""The answer policy of long calls, a pure function: every rule, and every pair of rules in their precedence."""

from __future__ import annotations

import itertools

import pytest

from engine import InvalidArgument
from mcp_adapter.answer_policy import (
    BOUNDED_WAIT_S,
    CLIENT_TABLE,
    AnswerPlan,
    ClientId,
    parse_version,
    plan_answer,
)

CLAUDE_CODE = ClientId("claude-code", "2.1.332")
OLD_CLAUDE_CODE = ClientId("claude-code", "2.1.197")
OTHER = ClientId("cursor", "9.9.9")


def _plan(*, tasks: bool = False, wait: float | None = None, env: str | None = None,
          client: ClientId | None = None) -> AnswerPlan:
    return plan_answer(declares_tasks=tasks, explicit_wait=wait, env_wait=env, client=client)


def test_a_request_that_declares_tasks_gets_a_task_whatever_else_it_says() -> None:
    for wait, env, client in itertools.product((None, 0.0, 5.0), (None, "", "7", "end"),
                                               (None, CLAUDE_CODE, OLD_CLAUDE_CODE, OTHER)):
        plan = _plan(tasks=True, wait=wait, env=env, client=client)
        assert (plan.kind, plan.wait_s) == ("task", None), (wait, env, client)


def test_an_explicit_wait_wins_over_the_variable_and_the_client_table() -> None:
    for wait, env, client in itertools.product((0.0, 2.5, 3600.0), (None, "", "7", "end"),
                                               (None, CLAUDE_CODE, OTHER)):
        assert _plan(wait=wait, env=env, client=client) == AnswerPlan("bounded", wait, "the call's wait")


def test_the_variable_wins_over_the_client_table() -> None:
    for client in (None, CLAUDE_CODE, OLD_CLAUDE_CODE, OTHER):
        assert _plan(env="12", client=client) == AnswerPlan("bounded", 12.0, "$LOCAL_LLM_MCP_WAIT_S")
        assert _plan(env=" 0 ", client=client).wait_s == 0.0
        assert _plan(env="end", client=client) == AnswerPlan("until_end", None, "$LOCAL_LLM_MCP_WAIT_S=end")
        assert _plan(env="END", client=client).kind == "until_end"


def test_a_blank_variable_counts_as_unset() -> None:
    assert _plan(env="  ", client=CLAUDE_CODE).kind == "until_end"
    assert _plan(env="", client=OTHER) == _plan(client=OTHER)


@pytest.mark.parametrize("raw", ["forty", "-1", "3601", "nan", "inf", "1e400"])
def test_a_bad_variable_is_an_error_that_names_it_and_the_fix(raw: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        _plan(env=raw, client=CLAUDE_CODE)
    assert "$LOCAL_LLM_MCP_WAIT_S" in str(caught.value) and "unset it" in str(caught.value)
    with pytest.raises(InvalidArgument):  # even where another rule decides: a wrong setting never hides
        _plan(tasks=True, env=raw)


@pytest.mark.parametrize("version", ["2.1.212", "2.1.332", "2.2", "2.2.0", "3", "2.1.400-beta.1", "v2.1.300"])
def test_claude_code_from_2_1_212_gets_its_answer_when_the_run_ends(version: str) -> None:
    plan = _plan(client=ClientId("claude-code", version))
    assert (plan.kind, plan.wait_s) == ("until_end", None)
    assert "claude-code" in plan.reason


def test_the_client_name_is_compared_without_case() -> None:
    assert _plan(client=ClientId("Claude-Code", "2.1.332")).kind == "until_end"


@pytest.mark.parametrize("version", ["2.1.211", "2.1.197", "2.0.999", "1.9", "", "latest"])
def test_older_or_unversioned_claude_code_keeps_the_bounded_wait(version: str) -> None:
    assert _plan(client=ClientId("claude-code", version)) == AnswerPlan(
        "bounded", BOUNDED_WAIT_S, "default for other clients")


def test_other_and_unknown_clients_keep_todays_bounded_wait_of_40_seconds() -> None:
    assert BOUNDED_WAIT_S == 40.0
    for client in (None, OTHER, ClientId("mcp", "0.1.0"), ClientId("claude-code-fork", "9")):
        assert _plan(client=client) == AnswerPlan("bounded", 40.0, "default for other clients")


def test_the_table_names_claude_code_as_it_names_itself_with_its_first_backgrounding_version() -> None:
    [rule] = CLIENT_TABLE
    assert (rule.name, rule.min_version, rule.kind) == ("claude-code", (2, 1, 212), "until_end")


def test_client_info_is_read_from_its_object_and_nothing_else() -> None:
    assert ClientId.from_info({"name": " claude-code ", "version": "2.1.332", "title": "x"}) == CLAUDE_CODE
    assert ClientId.from_info({"name": "x"}) == ClientId("x", "")
    assert ClientId.from_info({"name": "x", "version": 3}) == ClientId("x", "")
    for bad in (None, "claude-code", {"version": "1"}, {"name": ""}, {"name": 5}, ["claude-code"]):
        assert ClientId.from_info(bad) is None


def test_versions_are_read_up_to_their_first_non_number() -> None:
    assert parse_version("2.1.332") == (2, 1, 332)
    assert parse_version(" v2.1.332-rc.1 (Claude Code)") == (2, 1, 332)
    assert parse_version("10") == (10,)
    assert parse_version("") is None and parse_version("beta") is None

