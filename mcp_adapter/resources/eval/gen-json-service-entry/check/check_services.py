"""Hidden check of gen-json-service-entry: the new entry where it belongs, exactly; everything else unchanged."""
import json
import sys
from pathlib import Path

config = json.loads(Path("services.json").read_text())
names = [s.get("name") for s in config.get("services", [])]
problems = []
if names != ["auth", "billing", "search", "catalog", "mailer"]:
    problems.append(f"services in the order {names}")
WANT = {"name": "search", "port": 8006, "health": "/search/health", "replicas": 3,
        "env": {"LOG_LEVEL": "warn", "SEARCH_INDEX": "products"}}
entry = next((s for s in config.get("services", []) if s.get("name") == "search"), None)
if entry != WANT:
    problems.append(f"the search entry is {entry!r}")
OTHERS = [
    {"name": "auth", "port": 8001, "health": "/auth/health", "replicas": 2, "env": {"LOG_LEVEL": "info"}},
    {"name": "billing", "port": 8002, "health": "/billing/health", "replicas": 2,
     "env": {"LOG_LEVEL": "info", "CURRENCY": "EUR"}},
    {"name": "catalog", "port": 8003, "health": "/catalog/health", "replicas": 4, "env": {"LOG_LEVEL": "debug"}},
    {"name": "mailer", "port": 8005, "health": "/mailer/health", "replicas": 1,
     "env": {"LOG_LEVEL": "info", "SMTP_HOST": "smtp.internal"}},
]
others = [s for s in config.get("services", []) if s.get("name") != "search"]
if others != OTHERS:
    problems.append("the other entries changed")
if config.get("version") != 3 or config.get("defaults") != {"timeout_seconds": 30, "retries": 2}:
    problems.append("the rest of the file changed")
if problems:
    sys.exit("\n".join(problems))
print("services.json: the search entry as asked, the rest unchanged")
