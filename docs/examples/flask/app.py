"""A Flask app factory; the catalog is built in the factory, after init_app."""

from __future__ import annotations

import os

from catalog import Catalog
from flask import Flask, current_app

from warmstart.integrations.flask import Warmstart

warm = Warmstart()


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["WARMSTART_NAMESPACE"] = "catalog"  # the store directory: $WARMSTART_DIR
    warm.init_app(app)
    app.extensions["catalog"] = Catalog()  # built after init_app: captured
    app.add_url_rule("/health", view_func=warm.health)
    app.add_url_rule("/item/<key>", view_func=item)
    return app


def item(key: str) -> dict[str, object]:
    row, hit = current_app.extensions["catalog"].lookup(key)
    return {"key": row.key, "value": row.value, "hit": hit, "pid": os.getpid()}
