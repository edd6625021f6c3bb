"""``boot(pool=...)``: merge the other workers' newest state into an attached object.

Private to the boot wing; the merge itself is ``warmstart.workers``'
(``PoolMerge``), imported here on first use, so that only pooling boots pay
for that wing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from warmstart.boot._settings import BootSettings
    from warmstart.boot._warm import WarmSpec
    from warmstart.metrics import BootReport
    from warmstart.store import Store

__all__ = ("merge_pool",)


def merge_pool(
    obj: object,
    spec: WarmSpec,
    sections: dict[str, str],
    *,
    settings: BootSettings,
    store: Store | None,
    stale: bool,
    report: BootReport,
    enqueue: Callable[[Callable[[], Any]], None],
) -> None:
    """Merge the pool's state into ``obj``'s containers (``sections``: attribute -> section).

    Where the object's own restore was eager, now (the object is not shared
    yet); where it was progressive, after its background phase, as the next
    job (``enqueue``). Nothing without ``pool=``, a store, or with a stale
    checkpoint (its values start cold; the pool's are no fresher).
    """
    if settings.pool is None or store is None or stale:
        return
    from warmstart.workers import PoolItem, PoolMerge  # noqa: PLC0415 - only pools pay for it

    now: list[PoolItem] = []
    later: list[PoolItem] = []
    for attr, section in sections.items():
        st = spec.states[attr]
        value = getattr(obj, attr, None)
        if st.keys_only or st.contract is None or value is None:
            continue
        if isinstance(value, msgspec.Struct):
            continue
        restored = report.sections.get(section)
        lock = getattr(obj, st.lock) if st.lock is not None else None
        item = PoolItem(section, st.contract, value, lock, restored)
        (later if restored is not None and restored.status == "warming" else now).append(item)
    merge = PoolMerge(
        settings.pool,
        store,
        settings.namespace,
        max_age=settings.max_age,
        clock=settings.clock,
        report=report,
    )
    merge.run(now)
    if later:
        enqueue(functools.partial(merge.run, later))
