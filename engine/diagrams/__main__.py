"""Regenerate the `diagrams/` folder: python -m engine.diagrams diagrams/"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.diagrams import write_folder

if __name__ == "__main__":
    for path in write_folder(Path(sys.argv[1] if len(sys.argv) > 1 else "diagrams")):
        print(path)
