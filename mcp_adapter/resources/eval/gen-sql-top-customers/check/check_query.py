"""Hidden check of gen-sql-top-customers: the query on data of its own (ties none, customers without orders)."""
import sqlite3
import sys
from pathlib import Path

DATA = """
INSERT INTO customer (id, name, city) VALUES (1, 'Ada', 'London'), (2, 'Grace', 'New York'), (3, 'Linus', 'Helsinki'),
    (4, 'Margaret', 'Boston'), (5, 'Edsger', 'Austin'), (6, 'Barbara', 'Boston');
INSERT INTO purchase_order (customer_id, amount, placed_on) VALUES
    (1, 10.0, '2024-01-02'), (2, 70.25, '2024-01-03'), (1, 15.5, '2024-02-01'), (3, 99.0, '2024-02-10'),
    (4, 12.0, '2024-03-01'), (4, 12.0, '2024-03-02'), (4, 12.0, '2024-03-03'), (5, 1.0, '2024-03-04'),
    (2, 4.75, '2024-03-05');
"""
EXPECTED = [("Linus", 99.0), ("Grace", 75.0), ("Margaret", 36.0)]
db = sqlite3.connect(":memory:")
db.executescript(Path("schema.sql").read_text() + DATA)
rows = [tuple(r) for r in db.execute(Path("top_customers.sql").read_text())]
got = [(r[0], round(float(r[1]), 2)) if len(r) == 2 else r for r in rows]
if got != EXPECTED:
    sys.exit(f"the query returned {rows!r}, expected {EXPECTED!r}")
print("top_customers.sql: the right three customers and totals, in order")
