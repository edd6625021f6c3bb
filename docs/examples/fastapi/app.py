"""A FastAPI service under uvicorn --workers N; the catalog is built in the lifespan."""

from __future__ import annotations

import contextlib
import os

from catalog import Catalog
from fastapi import FastAPI, Request

from warmstart.integrations.asgi import WarmLifespan


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.catalog = Catalog()  # built inside the warm lifespan: captured
    yield


warm = WarmLifespan(lifespan, namespace="catalog")  # the store directory: $WARMSTART_DIR
app = FastAPI(lifespan=warm)
app.add_route("/health", warm.health)


@app.get("/item/{key}")
def item(key: str, request: Request) -> dict[str, object]:
    row, hit = request.app.state.catalog.lookup(key)
    return {"key": row.key, "value": row.value, "hit": hit, "pid": os.getpid()}
