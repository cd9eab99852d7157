from __future__ import annotations

from mcp_adapter.cli import main

raise SystemExit(main())
