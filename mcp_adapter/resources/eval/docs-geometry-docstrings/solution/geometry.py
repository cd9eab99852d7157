"""Plane geometry helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass


def circle_area(radius: float) -> float:
    """The area of a circle of `radius`; ValueError when it is negative."""
    if radius < 0:
        raise ValueError("negative radius")
    return math.pi * radius**2


def rectangle_area(width: float, height: float) -> float:
    """The area of a `width` x `height` rectangle."""
    return width * height


def triangle_area(a: float, b: float, c: float) -> float:
    """The area of the triangle with sides a, b and c (Heron's formula)."""
    s = (a + b + c) / 2
    return math.sqrt(s * (s - a) * (s - b) * (s - c))


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass(frozen=True)
class Vector:
    """A vector in the plane."""

    x: float
    y: float

    def length(self) -> float:
        """The vector's length."""
        return math.hypot(self.x, self.y)

    def dot(self, other: Vector) -> float:
        """The dot product with `other`."""
        return self.x * other.x + self.y * other.y

    def angle_to(self, other: Vector) -> float:
        """The angle to `other`, in radians."""
        cosine = self.dot(other) / (self.length() * other.length())
        return math.acos(_clamp(cosine, -1.0, 1.0))

    def scaled(self, factor: float) -> Vector:
        """This vector times `factor`."""
        return Vector(self.x * factor, self.y * factor)
