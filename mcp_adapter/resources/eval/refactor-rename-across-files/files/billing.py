"""Amounts of a basket: line totals, discounts, tax."""

from __future__ import annotations

TAX_RATE = 0.2


def line_total(price: float, quantity: int) -> float:
    return round(price * quantity, 2)


def calc_total(lines: list[tuple[float, int]], discount: float = 0.0) -> float:
    """The basket's total before tax, after a discount (a share, 0.1 for 10 %)."""
    subtotal = sum(line_total(price, quantity) for price, quantity in lines)
    return round(subtotal * (1 - discount), 2)


def total_with_tax(lines: list[tuple[float, int]], discount: float = 0.0) -> float:
    return round(calc_total(lines, discount) * (1 + TAX_RATE), 2)
