"""The service every example serves: a cache of rows in front of a slow source.

``Catalog.lookup(key)`` answers from the cache, or reads the source (here a
function that sleeps a millisecond, standing in for a database) and caches
the row. The cache is warm state: ``@warmstart.warm`` names it, with the
lock that guards it, so that a checkpoint reads it consistently and a
restore can run in the background while requests are served.
"""

from __future__ import annotations

import threading
import time

import cachetools
import msgspec

import warmstart


class Row(msgspec.Struct, frozen=True):
    key: str
    value: int


ROWS = warmstart.Contract("row", Row, key=str)


def read_source(key: str) -> Row:
    """The source of truth: slow."""
    time.sleep(0.001)
    return Row(key, sum(key.encode()))


@warmstart.warm(rows=warmstart.state(ROWS, lock="lock"))
class Catalog:
    def __init__(self, capacity: int = 10_000) -> None:
        self.lock = threading.RLock()
        self.rows: cachetools.LRUCache[str, Row] = cachetools.LRUCache(maxsize=capacity)

    def lookup(self, key: str) -> tuple[Row, bool]:
        """The row, and whether it came from the cache."""
        with self.lock:
            row = self.rows.get(key)
        if row is not None:
            return row, True
        row = read_source(key)
        with self.lock:
            self.rows[key] = row
        return row, False
