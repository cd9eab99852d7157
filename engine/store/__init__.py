"""The durable store: SQLite tables and their migrations, persisted machines (validate a move, commit it with its
journal entry), the ownership tokens that tell whether the process holding a machine is alive, and what happens when
the database or one row is damaged (health.py: the errors; repair.py: `local-llm db`)."""
