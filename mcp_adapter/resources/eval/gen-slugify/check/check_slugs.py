"""Hidden check of gen-slugify: slugify on cases the task text does not show."""
import sys

from slugs import slugify

CASES = {
    "Hello, World!": "hello-world",
    "  Many   spaces  here ": "many-spaces-here",
    "already-a-slug": "already-a-slug",
    "--leading and trailing--": "leading-and-trailing",
    "Version 2.0 (final)": "version-2-0-final",
    "under_score__name": "under-score-name",
    "Caf\u00e9 cr\u00e8me": "caf-cr-me",
    "!!!": "",
    "": "",
    "ABC123xyz": "abc123xyz",
}
failed = [f"slugify({text!r}) returned {slugify(text)!r}, expected {want!r}"
          for text, want in CASES.items() if slugify(text) != want]
if failed:
    sys.exit("\n".join(failed))
print(f"slugify: {len(CASES)} cases passed")
