"""Plane geometry helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass


def circle_area(radius: float) -> float:
    if radius < 0:
        raise ValueError("negative radius")
    return math.pi * radius**2


def rectangle_area(width: float, height: float) -> float:
    return width * height


def triangle_area(a: float, b: float, c: float) -> float:
    s = (a + b + c) / 2
    return math.sqrt(s * (s - a) * (s - b) * (s - c))


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass(frozen=True)
class Vector:
    x: float
    y: float

    def length(self) -> float:
        return math.hypot(self.x, self.y)

    def dot(self, other: Vector) -> float:
        return self.x * other.x + self.y * other.y

    def angle_to(self, other: Vector) -> float:
        cosine = self.dot(other) / (self.length() * other.length())
        return math.acos(_clamp(cosine, -1.0, 1.0))

    def scaled(self, factor: float) -> Vector:
        return Vector(self.x * factor, self.y * factor)
