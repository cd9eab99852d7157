"""Hidden check of translate-ini-to-toml: settings.toml parses to exactly the typed settings."""
import sys
import tomllib
from pathlib import Path

WANT = {
    "server": {"host": "0.0.0.0", "port": 8080, "debug": False, "workers": 4},
    "database": {"url": "postgres://app@localhost:5432/app", "pool_size": 5, "timeout_seconds": 2.5},
    "features": {"signup": True, "beta_users": ["alice", "bob", "carol"], "banner": "Welcome back"},
}
got = tomllib.loads(Path("settings.toml").read_text())
problems = [f"[{s}] is {got.get(s)!r}, expected {w!r}" for s, w in WANT.items() if got.get(s) != w]
for section, values in WANT.items():
    for key, value in values.items():
        found = got.get(section, {}).get(key)
        if found == value and type(found) is not type(value):
            problems.append(f"{section}.{key} is a {type(found).__name__}, expected a {type(value).__name__}")
if set(got) != set(WANT):
    problems.append(f"tables {sorted(got)}, expected {sorted(WANT)}")
if problems:
    sys.exit("\n".join(problems))
print("settings.toml: every section, key and type as in settings.ini")
