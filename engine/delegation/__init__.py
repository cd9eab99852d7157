"""Delegation runs: request checks, the driver and its per-state steps, output locks, the files a run writes and
their journal, verify, views of a run, the delegation log and its statistics, and task scoring."""
