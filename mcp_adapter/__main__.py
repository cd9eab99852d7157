"""`python -m mcp_adapter`: the same as the `local-llm` console script."""

from __future__ import annotations

from mcp_adapter.entry import main

raise SystemExit(main())
