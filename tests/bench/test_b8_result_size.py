"""B8's figures are sizes, not times, so they can be a test: what the orchestrator reads from a delegate stays within
its token budgets (issue #12: a passed result <= 300 tokens, a failed one <= 600) and below the previous form."""

from __future__ import annotations

from bench import b8_result_size


def test_passed_and_failed_results_stay_within_their_token_budgets() -> None:
    passed, failed = b8_result_size.run(quick=True)
    assert passed.engine <= b8_result_size.PASSED_BUDGET and failed.engine <= b8_result_size.FAILED_BUDGET
    assert passed.passed and failed.passed
    assert failed.baseline > 3 * failed.engine  # the verify output once, its end only


def test_tokens_are_counted_as_a_quarter_of_the_compact_json() -> None:
    assert b8_result_size.json_tokens({"a": "x" * 10}) == 5  # {"a":"xxxxxxxxxx"}: 18 characters
