"""The durable store: SQLite tables and their migrations, persisted machines (validate a move, commit it with its
journal entry), ownership tokens of processes, and the recovery of runs whose process died."""
