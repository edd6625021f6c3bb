"""A Starlette service under uvicorn --workers N; the catalog is built at import."""

from __future__ import annotations

import os

from catalog import Catalog
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from warmstart.integrations.asgi import WarmLifespan

warm = WarmLifespan(namespace="catalog")  # the store directory: $WARMSTART_DIR
catalog = Catalog()  # built at import: collected, restored when the lifespan starts


async def item(request):
    row, hit = catalog.lookup(request.path_params["key"])
    return JSONResponse({"key": row.key, "value": row.value, "hit": hit, "pid": os.getpid()})


app = Starlette(
    routes=[Route("/health", warm.health), Route("/item/{key}", item)],
    lifespan=warm,
)
