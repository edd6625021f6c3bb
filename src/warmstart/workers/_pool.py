"""The shared warm pool: a worker restores its own slot, then the newest of the others'.

Private to the workers wing; the boot calls :class:`PoolMerge` for each
attached object when it was opened with ``pool=``. Each worker checkpoints
its own slot namespace (``svc/worker-2``); at boot it restores that, as any
boot does, and then merges the other slots' newest generations into the same
containers:

- **Which entries.** The union of its own container and the peers' saved
  sections, most recent first, up to the container's capacity (its
  ``maxsize``; ``Pool(limit=...)`` lowers it). Recency is the position in
  each worker's saved order (an LRU's recency, a dict's insertion order):
  the hottest entry of every worker first, then every worker's second, and
  so on, the process's own entries and then the newest checkpoint first at
  each position; a timed cache (TTL, TLRU) orders by expiry instead, latest
  first. A key already taken keeps the first (hottest) value. Expired entries
  are dropped and the others keep their remaining lifetime.
  ``Pool(prefer_own=True)`` ranks every entry of the process's own slot
  before the peers': they only fill the room left.
- **How.** Peers are decoded outside any lock. A bounded cache is then
  rebuilt in the union's order under its lock (``state(lock=...)``), so its
  recency follows the ranking and the entries that did not make it are the
  coldest. An unbounded container (dict, OrderedDict, TrackedDict) only
  gains the peers' missing entries: never overwriting a key, atomically
  (``setdefault``) where it is shared already.
- **When.** Right after the object's own restore: at once when that restore
  was eager, or as a background job after its cold phase when it was
  progressive; the boot is not ``ready`` until the merge is done.
- **Cost.** Every peer's section is read whole (each checkpoint is verified
  first, as for any load): N-1 sections per object; ``benchmarks/workers.py``
  measures it.

A process that dies while merging leaves a marker; the next boot of that
slot skips the pool once (its own restore still runs), so bad data in a peer
cannot crash-loop a service.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import operator
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec

from warmstart._containers import bulk_target, entries_of, finish_bulk, restore_into
from warmstart._hits import counter_of
from warmstart.contract import Contract
from warmstart.delta import TrackedDict
from warmstart.errors import CheckpointNotFoundError, ConfigurationError, ReadOnlyStoreError
from warmstart.metrics import BootReport, SectionReport
from warmstart.store import Snapshot, Store, paused_gc
from warmstart.workers._slots import slot_of

__all__ = ("Pool", "PoolItem", "PoolMerge", "check_pool", "peers_of")

log = logging.getLogger("warmstart.workers")

_NEVER = float("inf")
_MARKER = "pool-"


class Pool(msgspec.Struct, frozen=True, kw_only=True):
    """The shared warm pool of a service's workers: ``boot(..., pool=Pool())`` or ``pool=True``.

    The boot's namespace must be a worker slot's (``"svc/worker-2"``, see
    :func:`claim_slot`) unless ``peers`` names the others.

    Attributes:
        peers: the namespaces to merge from; None: every other slot of the
            same service that has a checkpoint in the store (so slots of a
            larger worker count, before N shrank, are merged too).
        max_age: seconds; a peer's checkpoint older than this is left out
            (None: the boot's ``max_age``, if any).
        limit: at most this many entries per container after the merge
            (None: a bounded cache's ``maxsize``; unbounded containers take
            every entry).
        prefer_own: rank all of the process's own slot first: the peers only
            fill the room it leaves (when its traffic is pinned to the slot).
    """

    peers: tuple[str, ...] | None = None
    max_age: float | None = None
    limit: int | None = None
    prefer_own: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and (type(self.limit) is not int or self.limit < 1):
            msg = f"Expected Pool(limit=) >= 1 (an int) or None, got {self.limit!r}"
            raise ConfigurationError(msg)
        if self.max_age is not None and (
            not isinstance(self.max_age, (int, float))
            or isinstance(self.max_age, bool)
            or self.max_age < 0
        ):
            msg = f"Expected Pool(max_age=) in seconds >= 0 or None, got {self.max_age!r}"
            raise ConfigurationError(msg)


def check_pool(pool: Pool | bool | None, namespace: str) -> Pool | None:
    """``boot(pool=...)`` as a Pool (None: no pool), checked against the boot's namespace.

    Raises:
        ConfigurationError: a pool without ``peers`` for a namespace that is
            not a worker slot's, or a value that is not a Pool or a bool.
    """
    given: object = pool
    if given is None or given is False:
        return None
    if given is True:
        given = Pool()
    if not isinstance(given, Pool):
        msg = f"Expected pool=True, False, None or a warmstart.workers.Pool, got {given!r}"
        raise ConfigurationError(msg)
    pool = given
    if pool.peers is None and slot_of(namespace) is None:
        msg = (
            f"Expected a worker slot's namespace for pool= (like 'svc/worker-2', from "
            f"warmstart.workers.claim_slot), got {namespace!r}; or name the peers: "
            f"Pool(peers=(...))"
        )
        raise ConfigurationError(msg)
    return pool


def peers_of(store: Store, namespace: str, pool: Pool) -> list[str]:
    """The namespaces ``namespace`` merges from: ``pool.peers``, or its service's other slots."""
    if pool.peers is not None:
        return [p for p in pool.peers if p != namespace]
    own = slot_of(namespace)
    assert own is not None  # check_pool
    found = []
    for name in store.namespaces():
        other = slot_of(name)
        if name != namespace and other is not None and other[0] == own[0]:
            found.append(name)
    return found


class PoolItem(msgspec.Struct):
    """One container of an attached object, to merge the pool into."""

    section: str
    contract: Contract[Any]
    container: Any
    lock: Any
    report: SectionReport | None


class _Source(msgspec.Struct):
    """One worker's entries of a section, coldest first."""

    keys: list[Any]
    values: list[Any]
    expires: list[float]


class PoolMerge:
    """Merges the peers' newest state into one attached object's containers.

    Args:
        pool: the pool's settings.
        store: the boot's store.
        namespace: the boot's own (slot) namespace.
        max_age: the boot's ``max_age`` (``pool.max_age`` wins).
        clock: the wall clock.
        report: the boot's report: ``pool`` and each section's ``pooled``.
    """

    def __init__(
        self,
        pool: Pool,
        store: Store,
        namespace: str,
        *,
        max_age: float | None,
        clock: Callable[[], float],
        report: BootReport,
    ) -> None:
        self.pool = pool
        self.store = store
        self.namespace = namespace
        self.max_age = pool.max_age if pool.max_age is not None else max_age
        self.clock = clock
        self.report = report

    def run(self, items: Sequence[PoolItem]) -> None:
        """Merge into every item; a failure costs only the pool, never the restore."""
        if not items:
            return
        try:
            with self._marked() as allowed:
                if not allowed:
                    return
                snapshots = self._open_peers()
                try:
                    for item in items:
                        self._merge(item, snapshots)
                finally:
                    for snapshot in snapshots:
                        snapshot.close()
        except Exception as exc:
            self.report.pool["*"] = f"failed: {exc}"
            log.warning("namespace %r: shared pool not merged: %s", self.namespace, exc)

    # -- the crash guard --------------------------------------------------------

    @contextlib.contextmanager
    def _marked(self) -> Iterator[bool]:
        """A marker while merging; a marker of a dead process skips the pool this once."""
        if self.store.readonly:
            yield True
            return
        for name in self.store.markers(self.namespace):
            if not name.startswith(_MARKER):
                continue
            pid = name[len(_MARKER) :]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                self.store.set_marker(self.namespace, name, None)
                why = f"process {pid} died while merging the pool; skipped once"
                self.report.pool["*"] = f"skipped: {why}"
                log.warning("namespace %r: %s", self.namespace, why)
                yield False
                return
        mine = f"{_MARKER}{os.getpid()}"
        try:
            self.store.set_marker(self.namespace, mine, b"merging")
        except (OSError, ReadOnlyStoreError) as exc:  # pragma: no cover - disk trouble
            log.warning("namespace %r: pool marker not set: %s", self.namespace, exc)
        try:
            yield True
        finally:
            with contextlib.suppress(OSError, ReadOnlyStoreError):
                self.store.set_marker(self.namespace, mine, None)

    # -- peers ------------------------------------------------------------------

    def _open_peers(self) -> list[Snapshot]:
        """The peers' newest generations that verify and are young enough, newest first."""
        now = self.clock()
        opened: list[Snapshot] = []
        for peer in peers_of(self.store, self.namespace, self.pool):
            try:
                snapshot = self.store.load(peer)
            except CheckpointNotFoundError as exc:
                self.report.pool[peer] = f"skipped: {exc}"
                continue
            except Exception as exc:
                self.report.pool[peer] = f"skipped: {exc}"
                log.warning("namespace %r: pool peer %r unreadable: %s", self.namespace, peer, exc)
                continue
            age = snapshot.age(now)
            if self.max_age is not None and age > self.max_age:
                snapshot.close()
                self.report.pool[peer] = (
                    f"skipped: generation {snapshot.generation} is {age:.0f}s old, "
                    f"max_age is {self.max_age:.0f}s"
                )
                continue
            self.report.pool[peer] = f"generation {snapshot.generation}, {age:.0f}s old"
            opened.append(snapshot)
        opened.sort(key=lambda s: s.manifest.created_at, reverse=True)
        return opened

    def _peer_sources(self, item: PoolItem, snapshots: list[Snapshot]) -> list[_Source]:
        sources = []
        for snapshot in snapshots:
            if not snapshot.has_section(item.section):
                continue
            try:
                read = snapshot.read(item.section, item.contract)
            except Exception as exc:
                log.warning(
                    "namespace %r: section %r of pool peer %r not merged: %s",
                    self.namespace,
                    item.section,
                    snapshot.namespace,
                    exc,
                )
                continue
            keys = list(read.entries)
            expires = [read.expires.get(k, _NEVER) for k in keys] if read.expires else []
            sources.append(_Source(keys, list(read.entries.values()), expires))
        return sources

    # -- one container ----------------------------------------------------------

    def _merge(self, item: PoolItem, snapshots: list[Snapshot]) -> None:
        started = time.perf_counter()
        # The collector would walk every decoded entry again and again while
        # the merge allocates (a third of its time at 4 x 100,000 entries).
        with paused_gc():
            added = self._merge_paused(item, snapshots)
        self._note(item, added, time.perf_counter() - started)

    def _merge_paused(self, item: PoolItem, snapshots: list[Snapshot]) -> int:
        """Merge the peers into one container; how many entries it gained."""
        peers = self._peer_sources(item, snapshots)
        if not peers:
            return 0
        container = item.container
        counter = counter_of(container)
        with (
            item.lock if item.lock is not None else contextlib.nullcontext(),
            counter.restoring() if counter is not None else contextlib.nullcontext(),
        ):
            own = _Source(*entries_of(container))
            sources = [own, *peers]
            bounded = _capacity(container)
            limits = [n for n in (bounded, self.pool.limit) if n is not None]
            limit = min(limits) if limits else None
            timed = bool(own.expires) or any(p.expires for p in peers) or _is_timed(container)
            chosen = _select(sources, limit, timed, self.pool.prefer_own, self.clock())
            added = len(chosen.added)
            if bounded is not None:
                if added or len(chosen.keys) - added < len(own.keys):
                    try:
                        _rebuild(container, chosen, self.clock())
                    except BaseException:
                        # Never leave the cache emptier than its own restore made it.
                        mine = _Chosen(own.keys[::-1], own.values[::-1], own.expires[::-1], [])
                        _rebuild(container, mine, self.clock())
                        raise
            elif added:
                _add(container, chosen, self.clock())
            if counter is not None and added:
                counter.arm(chosen.added, final=True)
        return added

    def _note(self, item: PoolItem, added: int, seconds: float) -> None:
        report = item.report
        if report is None:
            return
        report.pooled += added
        report.seconds += seconds
        if added and report.status == "cold":
            report.status = "warm"
            report.reason = f"{report.reason}; {added} entries from the shared pool".lstrip("; ")
        if added and self.report.status == "cold":
            self.report.status = "warm"
            self.report.reason = f"{self.report.reason}; warmed from the shared pool".lstrip("; ")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _capacity(container: Any) -> int | None:
    """A bounded cache's ``maxsize`` (None: unbounded)."""
    maxsize = getattr(container, "maxsize", None)
    if getattr(container, "getsizeof", None) is None or not isinstance(maxsize, (int, float)):
        return None
    if maxsize == _NEVER:
        return None
    return int(maxsize)


def _is_timed(container: Any) -> bool:
    """A TTL or TLRU cache: its entries expire."""
    return callable(getattr(container, "timer", None)) and callable(
        getattr(container, "expire", None)
    )


class _Chosen(msgspec.Struct):
    """The entries kept, hottest first, and which of them the container lacks."""

    keys: list[Any]
    values: list[Any]
    expires: list[float]  # empty unless timed
    added: list[Any]  # keys not in the process's own container


_GAP = object()
_NOT_GAP = functools.partial(operator.is_not, _GAP)


def _interleave(lists: list[list[Any]]) -> Iterator[Any]:
    """The first item of each list, then the second of each, and so on (in C)."""
    if len(lists) == 1:
        return iter(lists[0])
    rounds = itertools.zip_longest(*lists, fillvalue=_GAP)
    return filter(_NOT_GAP, itertools.chain.from_iterable(rounds))


def _by_position(
    sources: list[_Source], limit: int | None, prefer_own: bool
) -> tuple[list[Any], list[Any]]:
    """Untimed: keys and values by position from the hot end, own first at each position."""
    hot_keys = [src.keys[::-1] for src in sources]
    hot_values = [src.values[::-1] for src in sources]
    if prefer_own:
        keys = list(itertools.chain(hot_keys[0], _interleave(hot_keys[1:] or [[]])))
        values = list(itertools.chain(hot_values[0], _interleave(hot_values[1:] or [[]])))
    else:
        keys = list(_interleave(hot_keys))
        values = list(_interleave(hot_values))
    return _first_distinct(keys, values, limit)


def _first_distinct(
    keys: list[Any], values: list[Any], limit: int | None
) -> tuple[list[Any], list[Any]]:
    """The first ``limit`` distinct keys, each with the value of its first place.

    Only a prefix is deduplicated: the first ``limit`` distinct keys lie within
    the first ``limit`` places plus the repeats among them (the dict work on
    every candidate was most of the merge's time).
    """
    size = len(keys) if limit is None else min(len(keys), limit)
    while True:
        head = keys[:size]
        first = dict.fromkeys(head)
        if limit is None or len(first) >= limit or size == len(keys):
            break
        size = min(len(keys), size + 2 * (limit - len(first)))
    chosen = list(itertools.islice(first, limit))
    if len(first) == size:  # no repeats: places are positions
        return chosen, values[: len(chosen)]
    # The first place of each key: a dict of the reversed places keeps the last
    # assignment, which is the first place.
    place = dict(zip(reversed(head), range(size - 1, -1, -1)))
    return chosen, list(map(values.__getitem__, map(place.__getitem__, chosen)))


def _by_expiry(
    sources: list[_Source], limit: int | None, prefer_own: bool, now: float
) -> tuple[list[Any], list[Any], list[float]]:
    """Timed: latest expiry first (own first at equal expiries); expired entries left out."""
    groups = [sources[:1], sources[1:]] if prefer_own else [sources]
    keys: list[Any] = []
    values: list[Any] = []
    expires: list[float] = []
    seen: set[Any] = set()
    offset = 0
    for group in groups:
        rows = [
            (-(src.expires[i] if src.expires else _NEVER), s + offset, i)
            for s, src in enumerate(group)
            for i in range(len(src.keys))
        ]
        rows.sort(key=operator.itemgetter(0, 1))
        for negative, s, i in rows:
            key = sources[s].keys[i]
            if key in seen or -negative <= now:
                continue
            seen.add(key)
            keys.append(key)
            values.append(sources[s].values[i])
            expires.append(-negative)
            if limit is not None and len(keys) >= limit:
                return keys, values, expires
        offset += len(group)
    return keys, values, expires


def _select(
    sources: list[_Source], limit: int | None, timed: bool, prefer_own: bool, now: float
) -> _Chosen:
    """The entries kept, hottest first: distinct keys, unexpired, at most ``limit``."""
    if timed:
        keys, values, expires = _by_expiry(sources, limit, prefer_own, now)
    else:
        (keys, values), expires = _by_position(sources, limit, prefer_own), []
    own = set(sources[0].keys)
    added = list(itertools.filterfalse(own.__contains__, keys))
    return _Chosen(keys, values, expires, added)


def _rebuild(container: Any, chosen: _Chosen, now: float) -> None:
    """Refill a bounded cache with ``chosen``, coldest first, so its order is the ranking's."""
    keys, values, expires = chosen.keys[::-1], chosen.values[::-1], chosen.expires[::-1]
    container.clear()
    target = None if expires else bulk_target(container, len(keys))
    if target is not None:
        target.update(zip(keys, values))
        finish_bulk(container)
        return
    restore_into(container, keys, values, expires, overwrite=True, now=now)


def _add(container: Any, chosen: _Chosen, now: float) -> None:
    """Add the entries ``container`` lacks (an unbounded one), coldest first, never overwriting."""
    index = dict(zip(chosen.keys, range(len(chosen.keys))))
    rows = [index[k] for k in reversed(chosen.added)]
    keys = [chosen.keys[i] for i in rows]
    values = [chosen.values[i] for i in rows]
    expires = [chosen.expires[i] for i in rows] if chosen.expires else []
    if isinstance(container, TrackedDict):
        # Atomic and recorded: the next checkpoint of this slot saves them.
        for key, value in zip(keys, values):
            container.setdefault(key, value)
        return
    restore_into(container, keys, values, expires, overwrite=False, now=now)


def ranking(sources: Sequence[Sequence[Any]], *, prefer_own: bool = False) -> list[Any]:
    """Keys of ``sources`` (each coldest first, the process's own first) in the pool's order.

    >>> ranking([["a1", "a0"], ["b2", "b1", "b0"]])
    ['a0', 'b0', 'a1', 'b1', 'b2']
    >>> ranking([["a1", "a0"], ["b2", "b1", "b0"]], prefer_own=True)
    ['a0', 'a1', 'b0', 'b1', 'b2']
    """
    built = [_Source(list(keys), list(itertools.repeat(None, len(keys))), []) for keys in sources]
    return _select(built, None, False, prefer_own, 0.0).keys
