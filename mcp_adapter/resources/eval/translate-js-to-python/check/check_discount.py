"""Hidden check of translate-js-to-python: the JavaScript's results on cases away from rounding ties."""
import sys

from discount import best_discount, format_price

CASES = [((100.0, False, None), 100.0), ((100.0, True, None), 95.0), ((100.0, True, "SAVE10"), 90.0),
         ((250.0, True, "SAVE10"), 237.5), ((49.99, False, "SAVE10"), 49.99), ((18.0, False, "HALF"), 9.0),
         ((18.0, True, "HALF"), 9.0), ((25.0, False, "HALF"), 25.0), ((12.34, True, None), 11.72),
         ((60.0, False, "save10"), 60.0)]
problems = [f"best_discount{args} = {best_discount(*args)!r}, expected {want!r}"
            for args, want in CASES if abs(best_discount(*args) - want) > 1e-9]
for amount, want in ((3.0, "$3.00"), (12.5, "$12.50"), (1234.567, "$1234.57"), (0.0, "$0.00")):
    if format_price(amount) != want:
        problems.append(f"format_price({amount}) = {format_price(amount)!r}, expected {want!r}")
try:
    format_price(-1.0)
except ValueError:
    pass
else:
    problems.append("format_price(-1.0) raised nothing (the JavaScript throws a RangeError)")
if problems:
    sys.exit("\n".join(problems))
print("discount.py: the JavaScript's results on every case")
