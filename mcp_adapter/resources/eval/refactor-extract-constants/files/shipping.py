"""What an order costs to ship, and its price with VAT."""

from __future__ import annotations

import math


def shipping_cost(subtotal: float, weight_kg: float) -> float:
    if subtotal >= 50:
        return 0.0
    return round(4.9 + 1.5 * math.ceil(weight_kg), 2)


def with_vat(amount: float) -> float:
    return round(amount * (1 + 0.2), 2)


def vat_of(amount: float) -> float:
    return round(amount * 0.2, 2)


def missing_for_free_shipping(subtotal: float) -> float:
    return max(0.0, round(50 - subtotal, 2))


def order_total(subtotal: float, weight_kg: float) -> float:
    return with_vat(subtotal + shipping_cost(subtotal, weight_kg))
