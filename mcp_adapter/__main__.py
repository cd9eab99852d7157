"""`python -m mcp_adapter`: the same as the `local-llm` console script.

Guarded: worker processes (anyio.to_process) load the parent's main module under another name, and must not start
the CLI again."""

from __future__ import annotations

from mcp_adapter.entry import main

if __name__ == "__main__":
    raise SystemExit(main())
