"""Reloading hot keys from the source of truth: key-only sections and refresh.

Private; used by ``boot``. A key-only section remembers which keys were hot,
not their values; at boot the service's ``prefetch(keys)`` loads them, in
batches, hottest first, with bounded concurrency (threads for a function, the
event loop for a coroutine function). A stale checkpoint hands its hot keys to
``refresh(section, keys)`` the same way. A mapping either returns is inserted
with ``setdefault``: a value the live service wrote meanwhile is newer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from warmstart.metrics import SectionReport

if TYPE_CHECKING:
    import asyncio

__all__ = ()

log = logging.getLogger("warmstart.boot")


def is_coroutine_function(func: object) -> bool:
    import inspect  # noqa: PLC0415 - ~8 ms to import; most boots never need it

    return inspect.iscoroutinefunction(func)


class KeyReloader:
    """Calls a user's loader on batches of keys and fills a container with the results."""

    def __init__(
        self,
        *,
        concurrency: int,
        batch: int,
        loop: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        self.concurrency = concurrency
        self.batch = batch
        self._loop = loop

    def prefetch(
        self,
        load: Callable[[list[Any]], Any],
        keys: list[Any],
        container: Any,
        lock: Any,
        report: SectionReport,
    ) -> None:
        """Run ``load`` over ``keys`` in batches and insert what it returns."""
        batches = [keys[i : i + self.batch] for i in range(0, len(keys), self.batch)]
        if is_coroutine_function(load):
            fill(batches, self._gather(load, batches), container, lock, report)
            return
        import concurrent.futures  # noqa: PLC0415 - only key-only sections need it

        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            # map() yields in order as batches finish: insert as they come.
            fill(batches, pool.map(_guarded(load), batches), container, lock, report)

    def refresh(
        self,
        refresh: Callable[[str, list[Any]], Any],
        section: str,
        keys: list[Any],
        container: Any,
        lock: Any,
        report: SectionReport,
    ) -> bool:
        """Call ``refresh(section, keys)`` once; False (logged) if it raised."""
        try:
            if is_coroutine_function(refresh):
                result = self.on_loop(lambda: refresh(section, keys))
            else:
                result = refresh(section, keys)
        except Exception as exc:
            log.warning("refresh of section %r failed: %r", section, exc)
            report.reason = f"stale checkpoint; refresh() failed: {exc!r}"
            return False
        fill([keys], [{} if result is None else result], container, lock, report)
        return True

    def _gather(self, load: Callable[[list[Any]], Any], batches: list[list[Any]]) -> list[Any]:
        import asyncio  # noqa: PLC0415

        async def run_all() -> list[Any]:
            gate = asyncio.Semaphore(self.concurrency)

            async def one(batch: list[Any]) -> Any:
                async with gate:
                    try:
                        result = await load(batch)
                    except Exception as exc:
                        log.warning("prefetch of %d keys failed: %r", len(batch), exc)
                        return None
                    return {} if result is None else result

            return list(await asyncio.gather(*(one(b) for b in batches)))

        results: list[Any] = self.on_loop(run_all)
        return results

    def on_loop(self, factory: Callable[[], Any]) -> Any:
        """Run a coroutine on the boot's event loop (``async with``), or on a new one."""
        import asyncio  # noqa: PLC0415

        loop = self._loop()
        if loop is not None and loop.is_running():
            return asyncio.run_coroutine_threadsafe(factory(), loop).result()
        return asyncio.run(factory())


def _guarded(load: Callable[[list[Any]], Any]) -> Callable[[list[Any]], Any]:
    def call(batch: list[Any]) -> Any:
        try:
            result = load(batch)
        except Exception as exc:
            log.warning("prefetch of %d keys failed: %r", len(batch), exc)
            return None
        return {} if result is None else result

    return call


def fill(
    batches: list[list[Any]],
    results: Iterable[Any],
    container: Any,
    lock: Any,
    report: SectionReport,
) -> None:
    """Insert each batch's returned mapping; count the keys whose load succeeded."""
    for batch, result in zip(batches, results):
        if isinstance(result, Mapping) and container is not None:
            try:
                with lock if lock is not None else contextlib.nullcontext():
                    for key, value in result.items():
                        # A value the service wrote meanwhile is newer: keep it.
                        container.setdefault(key, value)
            except Exception as exc:
                log.warning("prefetched values of %d keys not inserted: %r", len(batch), exc)
        report.prefetched += len(batch) if result is not None else 0
        report.restored = report.prefetched
