"""Several worker processes of one service: stable slots and a shared warm pool.

A pre-forking server (gunicorn, uvicorn ``--workers``) runs N processes that
each hold their own warm state. :func:`claim_slot` gives each a slot 0..N-1
that survives restarts on one host (a file lock in the store directory), so a
restarted worker restores its predecessor's namespace, ``"svc/worker-2"``.
``boot(namespace=slot.namespace, pool=True)`` also merges the other slots'
newest state into the worker's containers, up to their capacity, most recent
first (:class:`Pool`). The framework integrations (``warmstart.integrations``)
do both for you.

>>> import tempfile, msgspec, warmstart
>>> from warmstart.workers import claim_slot, release_slot
>>> folder = tempfile.mkdtemp()
>>> slot = claim_slot(folder, "catalog", workers=2)
>>> slot.namespace
'catalog/worker-0'
>>> with warmstart.boot(folder, namespace=slot.namespace, pool=True, signals=False) as b:
...     pass
>>> release_slot(slot)
"""

from __future__ import annotations

from warmstart._api import claim
from warmstart.workers._pool import Pool
from warmstart.workers._pool import PoolItem as PoolItem
from warmstart.workers._pool import PoolMerge as PoolMerge
from warmstart.workers._pool import check_pool as check_pool
from warmstart.workers._slots import WorkerSlot, claim_slot, release_slot, slot_namespace, slot_of

__all__ = ("Pool", "WorkerSlot", "claim_slot", "release_slot", "slot_namespace", "slot_of")

claim("warmstart.workers", Pool, WorkerSlot, claim_slot, release_slot, slot_namespace, slot_of)


def __dir__() -> tuple[str, ...]:
    return __all__
