"""The price of a basket after the best discount it qualifies for (only one applies)."""

from __future__ import annotations

import math

MEMBER_SHARE = 0.05


def best_discount(total: float, is_member: bool, coupon_code: str | None) -> float:
    best = 0.0
    if is_member:
        best = max(best, total * MEMBER_SHARE)
    if coupon_code == "SAVE10" and total >= 50:
        best = max(best, 10.0)
    if coupon_code == "HALF" and total < 20:
        best = max(best, total / 2)
    return math.floor((total - best) * 100 + 0.5) / 100


def format_price(amount: float) -> str:
    if amount < 0:
        raise ValueError("negative price")
    return f"${amount:.2f}"
