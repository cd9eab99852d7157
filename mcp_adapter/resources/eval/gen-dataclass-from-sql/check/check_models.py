"""Hidden check of gen-dataclass-from-sql: the fields, their types and defaults, frozen, from_row."""
import dataclasses
import sys
import typing

import models

COLUMNS = [("id", {int}), ("title", {str}), ("author", {str}), ("published_year", {int}),
           ("price", {float}), ("isbn", {str, type(None)}), ("shelf", {str, type(None)})]
problems = []
book = models.Book
if not dataclasses.is_dataclass(book):
    sys.exit("models.Book is not a dataclass")
fields = dataclasses.fields(book)
if [f.name for f in fields] != [name for name, _ in COLUMNS]:
    problems.append(f"fields are {[f.name for f in fields]}, expected {[name for name, _ in COLUMNS]}")
hints = typing.get_type_hints(book)
for name, types in COLUMNS:
    hint = hints.get(name)
    got = set(typing.get_args(hint)) if typing.get_args(hint) else {hint}
    if got != types:
        problems.append(f"{name}: annotated {hint!r}")
for f in fields:
    nullable = f.name in ("isbn", "shelf")
    if nullable and f.default is not None:
        problems.append(f"{f.name}: default {f.default!r}, expected None")
    if not nullable and f.default is not dataclasses.MISSING:
        problems.append(f"{f.name}: has a default, but the column is NOT NULL")
row = (7, "Dune", "Frank Herbert", 1965, 9.5, None, "B2")
built = book.from_row(row)
if dataclasses.astuple(built) != row:
    problems.append(f"from_row({row!r}) gave {built!r}")
try:
    built.title = "x"
except dataclasses.FrozenInstanceError:
    pass
else:
    problems.append("Book is not frozen")
if problems:
    sys.exit("\n".join(problems))
print("models.Book: fields, types, defaults, frozen and from_row as asked")
