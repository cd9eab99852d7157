"""Messy answers the way real models write them (aider's and others' experience with search/replace blocks: prose
around the blocks, fences missing, doubled or four backticks long, the path in bold, in a comment, inside the fence,
`./` spellings, blocks cut at the token limit, whitespace drift, two blocks for one region), each with the files as
they are and the expected outcome: the exact bytes of every changed file, or the kinds of the problems."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CASES", "Case"]


@dataclass(frozen=True)
class Case:
    name: str
    category: str
    answer: str
    files: dict[str, bytes | None]
    """Every requested output: its bytes, or None when it does not exist."""
    result: dict[str, bytes] = field(default_factory=dict)
    """The bytes of every file the answer changes (when it applies)."""
    errors: tuple[str, ...] = ()
    """The problem kinds (sorted, each once) when it does not apply."""
    notes: tuple[str, ...] = ()
    """Words that some note must contain."""


CART = b"""import math


class Cart:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def total(self):
        return sum(i.price for i in self.items)


def area(r):
    return math.pi * r * r
"""
CART_TOTAL = CART.replace(b"        return sum(i.price for i in self.items)",
                          b"        return round(sum(i.price for i in self.items), 2)")
CART_AREA = CART.replace(b"    return math.pi * r * r", b"    return math.pi * r ** 2")
CART_BOTH = CART_TOTAL.replace(b"    return math.pi * r * r", b"    return math.pi * r ** 2")
UTIL = b"def double(x):\n    return x * 2\n"
UTIL_TRIPLE = b"def double(x):\n    return x * 2\n\n\ndef triple(x):\n    return x * 3\n"

TOTAL_BLOCK = """<<<<<<< SEARCH
    def total(self):
        return sum(i.price for i in self.items)
=======
    def total(self):
        return round(sum(i.price for i in self.items), 2)
>>>>>>> REPLACE"""
AREA_BLOCK = """<<<<<<< SEARCH
def area(r):
    return math.pi * r * r
=======
def area(r):
    return math.pi * r ** 2
>>>>>>> REPLACE"""
TRIPLE_BLOCK = """<<<<<<< SEARCH
def double(x):
    return x * 2
=======
def double(x):
    return x * 2


def triple(x):
    return x * 3
>>>>>>> REPLACE"""

ONE = {"src/cart.py": CART}
TWO = {"src/cart.py": CART, "src/util.py": UTIL}

RST = b"""Guide
=======

Install it.

Usage
=======

Run it.
"""
MARKDOWN = b"""# Tool

Run:

```bash
tool --fast
```
"""

CASES: list[Case] = [
    Case("the asked-for form", "clean", f"src/cart.py\n```python\n{TOTAL_BLOCK}\n```\n", ONE,
         result={"src/cart.py": CART_TOTAL}),
    Case("prose before, between and after the blocks", "prose",
         f"Sure! I'll round the total and simplify the area.\n\nsrc/cart.py\n```python\n{TOTAL_BLOCK}\n```\n\n"
         f"Next, the area function:\n\nsrc/cart.py\n```python\n{AREA_BLOCK}\n```\n\nThese changes keep the tests "
         "green. Let me know if you need anything else!\n", ONE, result={"src/cart.py": CART_BOTH}),
    Case("the path inside the fence, on its first line", "path",
         f"```python\nsrc/cart.py\n{TOTAL_BLOCK}\n```\n", ONE, result={"src/cart.py": CART_TOTAL}),
    Case("the path in the fence's info string", "path",
         f"```python src/cart.py\n{TOTAL_BLOCK}\n```\n", ONE, result={"src/cart.py": CART_TOTAL}),
    Case("the path in bold", "path", f"**src/cart.py**\n```python\n{TOTAL_BLOCK}\n```\n", ONE,
         result={"src/cart.py": CART_TOTAL}),
    Case("the path in backticks with a colon", "path", f"`src/cart.py`:\n```python\n{TOTAL_BLOCK}\n```\n", ONE,
         result={"src/cart.py": CART_TOTAL}),
    Case("the path in a Python comment", "path", f"# src/cart.py\n```python\n{TOTAL_BLOCK}\n```\n", ONE,
         result={"src/cart.py": CART_TOTAL}),
    Case("the path in a // comment", "path", f"// src/util.py\n```\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("the path after File:", "path", f"File: src/util.py\n```\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("the path as a Markdown heading", "path", f"### `src/util.py`\n\n```python\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("the path spelled ./", "path", f"./src/util.py\n```python\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("the path spelled with backslashes", "path", f"src\\util.py\n```python\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("the path in a numbered list item", "path", f"1. src/util.py\n```python\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("the path named by a sentence", "path",
         f"Here is the change to `src/util.py` that adds triple:\n```python\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("the path with a remark after it", "path", f"src/util.py (updated)\n```python\n{TRIPLE_BLOCK}\n```\n",
         TWO, result={"src/util.py": UTIL_TRIPLE}),
    Case("the path alone in its own fence, the block in the next one", "fences",
         f"```python\nsrc/cart.py\n```\n```python\n{TOTAL_BLOCK}\n```\n", ONE, result={"src/cart.py": CART_TOTAL}),
    Case("no fences at all", "fences", f"src/cart.py\n{TOTAL_BLOCK}\n\nsrc/cart.py\n{AREA_BLOCK}\n", ONE,
         result={"src/cart.py": CART_BOTH}),
    Case("the last closing fence missing", "fences",
         f"src/cart.py\n```python\n{TOTAL_BLOCK}\n```\nsrc/cart.py\n```python\n{AREA_BLOCK}\n", ONE,
         result={"src/cart.py": CART_BOTH}),
    Case("extra closing fences", "fences",
         f"src/cart.py\n{TOTAL_BLOCK}\n```\n```\n\nsrc/util.py\n{TRIPLE_BLOCK}\n```\n",
         TWO, result={"src/cart.py": CART_TOTAL, "src/util.py": UTIL_TRIPLE}),
    Case("fences of four backticks around Markdown content with fences", "fences",
         "README.md\n````markdown\n<<<<<<< SEARCH\n```bash\ntool --fast\n```\n=======\n```bash\ntool --fast\n"
         "tool --slow\n```\n>>>>>>> REPLACE\n````\n", {"README.md": MARKDOWN},
         result={"README.md": MARKDOWN.replace(b"tool --fast\n", b"tool --fast\ntool --slow\n")}),
    Case("a three-backtick fence around Markdown content with fences", "markers",
         "README.md\n```markdown\n<<<<<<< SEARCH\nRun:\n\n```bash\n=======\n"
         "Run this:\n\n```bash\n>>>>>>> REPLACE\n```\n",
         {"README.md": MARKDOWN}, result={"README.md": MARKDOWN.replace(b"Run:", b"Run this:")}),
    Case("tilde fences", "fences", f"src/util.py\n~~~python\n{TRIPLE_BLOCK}\n~~~\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("several blocks in one fence, the later ones without a path", "blocks",
         f"src/cart.py\n```python\n{TOTAL_BLOCK}\n\n{AREA_BLOCK}\n```\n", ONE, result={"src/cart.py": CART_BOTH}),
    Case("two files in one answer", "blocks",
         f"src/cart.py\n```python\n{AREA_BLOCK}\n```\n\nsrc/util.py\n```python\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/cart.py": CART_AREA, "src/util.py": UTIL_TRIPLE}),
    Case("one requested output and no path", "path", f"```python\n{TOTAL_BLOCK}\n```\n", ONE,
         result={"src/cart.py": CART_TOTAL}, notes=("only requested output",)),
    Case("no path while several outputs are requested", "path", f"```python\n{TOTAL_BLOCK}\n```\n", TWO,
         errors=("no_path",)),
    Case("marker lengths drift", "markers",
         "src/cart.py\n```python\n<<<<<< SEARCH\ndef area(r):\n    return math.pi * r * r\n======\ndef area(r):\n"
         "    return math.pi * r ** 2\n>>>>>>>> REPLACE\n```\n", ONE, result={"src/cart.py": CART_AREA}),
    Case("markers in lower case with trailing blanks", "markers",
         "src/cart.py\n<<<<<<< search  \ndef area(r):\n    return math.pi * r * r\n=======   \ndef area(r):\n"
         "    return math.pi * r ** 2\n>>>>>>> replace\t\n", ONE, result={"src/cart.py": CART_AREA}),
    Case("the answer written with CRLF line endings", "markers",
         f"src/cart.py\r\n```python\r\n{AREA_BLOCK}\r\n```\r\n".replace("\n", "\r\n").replace("\r\r\n", "\r\n"),
         ONE, result={"src/cart.py": CART_AREA}),
    Case("a block cut off by the token limit", "cut off",
         f"src/cart.py\n```python\n{AREA_BLOCK}\n```\n\nsrc/cart.py\n```python\n<<<<<<< SEARCH\n    def total(self):\n"
         "        return sum(i.price for i in self.items)\n=======\n    def total(self):\n        return round(",
         ONE, errors=("unfinished",)),
    Case("a cut inside SEARCH", "cut off", "src/cart.py\n```python\n<<<<<<< SEARCH\n    def total(self):\n", ONE,
         errors=("unfinished",)),
    Case("a new file cut off inside its fence", "cut off",
         "src/new.py\n```python\ndef helper():\n    return [\n        1,\n", {"src/new.py": None},
         errors=("unfinished",)),
    Case("REPLACE marker forgotten before the next block", "markers",
         f"src/cart.py\n```python\n<<<<<<< SEARCH\ndef area(r):\n=======\ndef area(radius):\n```\n\nsrc/cart.py\n"
         f"```python\n{TOTAL_BLOCK}\n```\n", ONE, errors=("unfinished",)),
    Case("no ======= line", "markers",
         "src/cart.py\n```python\n<<<<<<< SEARCH\ndef area(r):\ndef area(radius):\n>>>>>>> REPLACE\n```\n", ONE,
         errors=("no_divider",)),
    Case("trailing whitespace in SEARCH", "whitespace",
         "src/cart.py\n```python\n<<<<<<< SEARCH\ndef area(r):   \n    return math.pi * r * r \n=======\n"
         "def area(r):\n    return math.pi * r ** 2\n>>>>>>> REPLACE\n```\n", ONE, result={"src/cart.py": CART_AREA},
         notes=("trailing whitespace",)),
    Case("a method written without its class indentation", "whitespace",
         "src/cart.py\n```python\n<<<<<<< SEARCH\ndef total(self):\n    return sum(i.price for i in self.items)\n"
         "=======\ndef total(self):\n    return round(sum(i.price for i in self.items), 2)\n>>>>>>> REPLACE\n```\n",
         ONE, result={"src/cart.py": CART_TOTAL}, notes=("added 4 spaces",)),
    Case("indentation that drifts inconsistently", "whitespace",
         "src/cart.py\n```python\n<<<<<<< SEARCH\ndef total(self):\n        return sum(i.price for i in self.items)\n"
         "=======\ndef total(self):\n    return 0\n>>>>>>> REPLACE\n```\n", ONE, errors=("no_match",)),
    Case("tabs where the file has spaces", "whitespace",
         "src/util.py\n```python\n<<<<<<< SEARCH\ndef double(x):\n\treturn x * 2\n=======\ndef double(x):\n"
         "\treturn x + x\n>>>>>>> REPLACE\n```\n", TWO, errors=("no_match",)),
    Case("two blocks for one region, both against the original", "overlap",
         f"src/cart.py\n```python\n{AREA_BLOCK}\n```\n\nsrc/cart.py\n```python\n<<<<<<< SEARCH\ndef area(r):\n"
         "    return math.pi * r * r\n=======\ndef area(r: float) -> float:\n    return math.pi * r * r\n"
         ">>>>>>> REPLACE\n```\n", ONE, errors=("no_match",)),
    Case("two blocks for one region, the second building on the first", "overlap",
         f"src/cart.py\n```python\n{AREA_BLOCK}\n```\n\nsrc/cart.py\n```python\n<<<<<<< SEARCH\ndef area(r):\n"
         "    return math.pi * r ** 2\n=======\ndef area(r: float) -> float:\n    return math.pi * r ** 2\n"
         ">>>>>>> REPLACE\n```\n", ONE,
         result={"src/cart.py": CART_AREA.replace(b"def area(r):", b"def area(r: float) -> float:")}),
    Case("the same block twice", "overlap",
         f"src/cart.py\n```python\n{AREA_BLOCK}\n```\n\nOnce more:\n\nsrc/cart.py\n```python\n{AREA_BLOCK}\n```\n",
         ONE, result={"src/cart.py": CART_AREA}, notes=("repeats block 1",)),
    Case("a SEARCH that matches several places", "rules",
         "src/cart.py\n```python\n<<<<<<< SEARCH\n\n\n=======\n\n# --\n>>>>>>> REPLACE\n```\n", ONE,
         errors=("several_matches",)),
    Case("a block for a file that was not requested", "rules",
         f"src/cart.py\n```python\n{AREA_BLOCK}\n```\n\ntests/test_cart.py\n```python\n<<<<<<< SEARCH\n=======\n"
         "def test_area():\n    assert True\n>>>>>>> REPLACE\n```\n", ONE, errors=("unknown_path",)),
    Case("the path in another case", "rules", f"SRC/Cart.py\n```python\n{AREA_BLOCK}\n```\n", ONE,
         errors=("unknown_path",)),
    Case("an empty SEARCH on a file that exists", "rules",
         "src/util.py\n```python\n<<<<<<< SEARCH\n=======\ndef triple(x):\n    return x * 3\n>>>>>>> REPLACE\n```\n",
         TWO, errors=("empty_search_existing",)),
    Case("a whole existing file rewritten in a plain fence", "rules",
         "src/util.py\n```python\ndef double(x):\n    return x + x\n```\n", TWO, errors=("whole_file_existing",)),
    Case("a SEARCH for a file that does not exist", "rules",
         f"src/new.py\n```python\n{TRIPLE_BLOCK}\n```\n", {"src/new.py": None}, errors=("search_on_absent",)),
    Case("a new file through an empty SEARCH", "new files",
         "src/new.py\n```python\n<<<<<<< SEARCH\n=======\ndef helper():\n    return 1\n>>>>>>> REPLACE\n```\n",
         {"src/cart.py": CART, "src/new.py": None}, result={"src/new.py": b"def helper():\n    return 1\n"}),
    Case("a new file as a plain fenced block after its path", "new files",
         "Create it:\n\n**src/new.py**\n```python\ndef helper():\n    return 1\n```\n", {"src/new.py": None},
         result={"src/new.py": b"def helper():\n    return 1\n"}),
    Case("a new Markdown file holding fences", "new files",
         "docs/new.md\n```markdown\n# New\n\n```python\nprint(1)\n```\n\nDone.\n```\n", {"docs/new.md": None},
         result={"docs/new.md": b"# New\n\n```python\nprint(1)\n```\n\nDone.\n"}),
    Case("a new reStructuredText file with underlines", "markers",
         "docs/new.rst\n```rst\n<<<<<<< SEARCH\n=======\nTitle\n=======\n\nText.\n>>>>>>> REPLACE\n```\n",
         {"docs/new.rst": None}, result={"docs/new.rst": b"Title\n=======\n\nText.\n"}),
    Case("reStructuredText underlines inside SEARCH and REPLACE", "markers",
         "docs/guide.rst\n```rst\n<<<<<<< SEARCH\nUsage\n=======\n\nRun it.\n=======\nUsage\n=======\n\n"
         "Run it with --fast.\n>>>>>>> REPLACE\n```\n", {"docs/guide.rst": RST},
         result={"docs/guide.rst": RST.replace(b"Run it.", b"Run it with --fast.")}),
    Case("a requested new file left out", "rules", f"src/cart.py\n```python\n{AREA_BLOCK}\n```\n",
         {"src/cart.py": CART, "src/new.py": None}, errors=("missing_file",)),
    Case("one good block and one bad: nothing applies", "rules",
         f"src/cart.py\n```python\n{AREA_BLOCK}\n```\n\nsrc/util.py\n```python\n<<<<<<< SEARCH\ndef quadruple(x):\n"
         "=======\ndef quadruple(x):\n    return 4 * x\n>>>>>>> REPLACE\n```\n", TWO, errors=("no_match",)),
    Case("the old JSON form", "habits",
         '{"files": [{"path": "src/util.py", "content": "def double(x):\\n    return x + x\\n"}]}', TWO,
         errors=("no_blocks",)),
    Case("an explanation snippet in a fence with no path", "prose",
         f"Run the tests with:\n\n```bash\npytest -q\n```\n\nsrc/util.py\n```python\n{TRIPLE_BLOCK}\n```\n", TWO,
         result={"src/util.py": UTIL_TRIPLE}),
    Case("a CRLF file", "bytes", f"src/util.py\n```python\n{TRIPLE_BLOCK}\n```\n",
         {"src/util.py": UTIL.replace(b"\n", b"\r\n")}, result={"src/util.py": UTIL_TRIPLE.replace(b"\n", b"\r\n")}),
    Case("a file without a final newline", "bytes", f"src/util.py\n```python\n{TRIPLE_BLOCK}\n```\n",
         {"src/util.py": UTIL.rstrip(b"\n")}, result={"src/util.py": UTIL_TRIPLE.rstrip(b"\n")}),
    Case("a file with a BOM", "bytes", f"src/util.py\n```python\n{TRIPLE_BLOCK}\n```\n",
         {"src/util.py": b"\xef\xbb\xbf" + UTIL}, result={"src/util.py": b"\xef\xbb\xbf" + UTIL_TRIPLE}),
    Case("a file that is not UTF-8", "bytes", f"src/util.py\n```python\n{TRIPLE_BLOCK}\n```\n",
         {"src/util.py": UTIL.replace(b"double", b"doubl\xe9")}, errors=("not_utf8",)),
]
