"""Invoices printed from baskets."""

from __future__ import annotations

from billing import compute_total, total_with_tax


def invoice_lines(lines: list[tuple[float, int]], discount: float = 0.0) -> list[str]:
    net = compute_total(lines, discount)
    gross = total_with_tax(lines, discount)
    out = [f"{quantity} x {price:.2f}" for price, quantity in lines]
    out.append(f"net {net:.2f}")
    out.append(f"tax {gross - net:.2f}")
    out.append(f"total {gross:.2f}")
    return out


def is_free(lines: list[tuple[float, int]], discount: float = 0.0) -> bool:
    return compute_total(lines, discount) == 0
