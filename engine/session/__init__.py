"""The session: one per project, the one driver of the session machine (engine/session/lifecycle.py), with the
preparation of each backend, the server processes it starts, GPU detection and the `llm=` spec."""
