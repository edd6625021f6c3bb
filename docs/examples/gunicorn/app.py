"""A WSGI service whose warm state is built at import time (no framework)."""

from __future__ import annotations

import json
import os

from catalog import Catalog
from warmstart.integrations import gunicorn as warm

catalog = Catalog()  # built at import: the worker's boot (or the master's collector) takes it


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/health":
        code, body = warm.status()
    elif path.startswith("/item/"):
        row, hit = catalog.lookup(path.removeprefix("/item/"))
        code, body = 200, {"key": row.key, "value": row.value, "hit": hit, "pid": os.getpid()}
    else:
        code, body = 404, {"error": "not found"}
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[code]
    start_response(f"{code} {reason}", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
