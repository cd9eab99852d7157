"""run_query.py FILE: run the SQL statement in FILE on schema.sql + sample.sql and print the rows it returns."""
import sqlite3
import sys
from pathlib import Path

db = sqlite3.connect(":memory:")
db.executescript(Path("schema.sql").read_text() + Path("sample.sql").read_text())
for row in db.execute(Path(sys.argv[1]).read_text()):
    print(row)
