"""Delegation runs, the one driver of the delegation machine: request checks, the driver and its per-state steps,
output locks, the files a run writes and their journal, verify, recovery of runs whose process died, the views of a
run, the delegation log and its statistics, and task scoring."""
