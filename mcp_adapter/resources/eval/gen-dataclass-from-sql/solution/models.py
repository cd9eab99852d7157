"""The library's rows as Python values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Book:
    id: int
    title: str
    author: str
    published_year: int
    price: float
    isbn: str | None = None
    shelf: str | None = None

    @classmethod
    def from_row(cls, row: tuple) -> Book:
        return cls(*row)
