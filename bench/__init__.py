"""Benchmarks for issue #6: every figure is a ratio against a baseline measured in the same run.

`python -m bench [--quick] [--only B1,B3] [--json]`; see BENCHMARKS.md for the figures and where the time goes.
"""

from __future__ import annotations

__all__: list[str] = []
