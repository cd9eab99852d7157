"""The reliability harness: `python -m bench.reliability [--short] [--only R1,R3] [--seed N] [--json]`.

R1 kill -9 during delegations, R2 backend faults (generation, enable's pull and load), R3 fuzzed tool arguments, R4
two servers on one project, R5 a concurrent editor in the shared tree (and between a kill -9 and the resume), R6
protected paths and path aliases, R7 a damaged database and damaged rows, R8 kill -9 during a 20-child batch, R9 a
batch behind a LiteLLM proxy with one of its two llama.cpp servers killed; each scenario reports tried / survived /
lost (see RELIABILITY.md).
"""

from __future__ import annotations

from bench.reliability.common import ScenarioResult

__all__ = ["SCENARIOS", "ScenarioResult", "run_scenarios"]

SCENARIOS = ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9")


def run_scenarios(ids: list[str], *, short: bool, seed: int) -> list[ScenarioResult]:
    """Run the chosen scenarios in order (imported lazily: each pulls in its own dependencies)."""
    from bench.reliability import (
        r1_kill9,
        r2_faults,
        r3_fuzz,
        r4_two_servers,
        r5_shared_tree,
        r6_protected,
        r7_damaged_db,
        r8_batch_kill9,
        r9_gateway,
    )

    runners = {"R1": r1_kill9.run, "R2": r2_faults.run, "R3": r3_fuzz.run, "R4": r4_two_servers.run,
               "R5": r5_shared_tree.run, "R6": r6_protected.run, "R7": r7_damaged_db.run,
               "R8": r8_batch_kill9.run, "R9": r9_gateway.run}
    return [runners[i](short=short, seed=seed) for i in ids]
