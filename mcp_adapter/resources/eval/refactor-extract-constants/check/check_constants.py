"""Hidden check of refactor-extract-constants: the two constants at module level, no 0.2 or 50 left in the
functions, the functions reading the constants (patched, they follow), and the same results as before."""
import ast
import sys
from pathlib import Path

import shipping

tree = ast.parse(Path("shipping.py").read_text())
problems = []
assigned = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
            for t in n.targets if isinstance(t, ast.Name)}
if assigned.get("VAT_RATE") != 0.2 or assigned.get("FREE_SHIPPING_OVER") != 50:
    problems.append(f"module-level constants: {assigned}")
literals = [n.value for f in tree.body if isinstance(f, ast.FunctionDef) for n in ast.walk(f)
            if isinstance(n, ast.Constant) and n.value in (0.2, 50) and not isinstance(n.value, bool)]
if literals:
    problems.append(f"literals left in the functions: {literals}")
CASES = [(shipping.shipping_cost, (49.99, 1.2), 7.9), (shipping.shipping_cost, (50, 3.0), 0.0),
         (shipping.with_vat, (10.0,), 12.0), (shipping.vat_of, (19.99,), 4.0),
         (shipping.missing_for_free_shipping, (42.5,), 7.5), (shipping.missing_for_free_shipping, (80,), 0.0),
         (shipping.order_total, (20.0, 0.5), 31.68)]
problems += [f"{f.__name__}{args} = {f(*args)}, expected {want}" for f, args, want in CASES if f(*args) != want]
shipping.VAT_RATE, shipping.FREE_SHIPPING_OVER = 0.1, 100
if shipping.with_vat(10.0) != 11.0 or shipping.shipping_cost(60, 1.0) == 0.0:
    problems.append("the functions do not read VAT_RATE and FREE_SHIPPING_OVER")
if problems:
    sys.exit("\n".join(problems))
print("shipping.py: VAT_RATE and FREE_SHIPPING_OVER used everywhere, results unchanged")
