"""The durable store: SQLite tables and their migrations, persisted machines (validate a move, commit it with its
journal entry), and the ownership tokens that tell whether the process holding a machine is alive."""
