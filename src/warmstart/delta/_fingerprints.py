"""Change detection for untracked mappings: a reference or a hash per entry.

For an untracked mapping whose values can never change in place (frozen
Structs all the way down), a snapshot of references from the last checkpoint:
a value that is the same object is unchanged. Otherwise the xxh3-64 of each
entry's encoded bytes, compared entry by entry. Either way the keys and
prints are kept in read order, and the diff lines the next read up with them
run by run, in C.
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import msgspec.inspect
import xxhash

from warmstart._pacing import SLICE, Pieces, drop, gather, long_lived, long_lived_lists, pace, parts
from warmstart.delta._table import KeyTable
from warmstart.delta._tracking import ChangeSet

__all__ = ("Fingerprints", "deeply_immutable")

#: Values encoded and hashed in one step: 1-2 us each once writes scattered
#: them, so a SLICE-long step held the GIL for 6-8 ms.
PRINT_SLICE = 1024
#: Positions looked up in one step where the sequences part (a lookup in
#: pieces, a key hashed, a cache miss each): 4,096 of them took 3-4 ms.
SCATTERED_SLICE = 1024


class Fingerprints:
    """What an untracked mapping looked like at its last checkpoint.

    Immutable values are remembered by reference (a value that is the same
    object is unchanged, found in C with ``operator.is_not``); mutable values
    by the xxh3-64 of their encoded bytes, since they may change in place.

    Keys and prints are kept as two lists in the order the mapping was read,
    not as a dict: the next read is mostly the same sequence (deletions drop
    out, inserts come last), so :meth:`diff` lines the two up run by run in C
    and only looks keys up by hash where the sequences part. Hashing every key
    into a dict cost more than a full save's encoding at a million entries
    (docs/benchmarks.md). Keys come from a mapping, so they are unique; the
    lists given to :meth:`diff` are kept, not copied.
    """

    __slots__ = ("_keys", "_pending", "_prints", "by_identity")

    def __init__(self, by_identity: bool) -> None:
        self.by_identity = by_identity
        self._keys: Sequence[Any] = []
        self._prints: Sequence[Any] = []
        # What the last diff read: keys, their prints, the change set and where
        # its upserts sit. update() adopts it when it advances past that diff.
        self._pending: tuple[Sequence[Any], Sequence[Any], ChangeSet, Sequence[int]] | None = None

    @property
    def seen(self) -> dict[Any, Any]:
        """Key -> print (the value itself, or its xxh3-64) as of the last checkpoint."""
        return dict(zip(self._keys, self._prints))

    def _print_all(self, values: Sequence[Any], encode: Callable[[Any], bytes]) -> Sequence[Any]:
        if self.by_identity:
            return _kept(values)
        # A slice at a time: hashing a million values in one map() held the
        # GIL for 300-800 ms.
        prints = long_lived(len(values))
        hash_ = xxhash.xxh3_64_intdigest
        for part in parts(values, min(SLICE, PRINT_SLICE)):
            prints.extend(map(hash_, map(encode, part)))
            pace()
        return prints

    @classmethod
    def of(
        cls,
        keys: Sequence[Any],
        values: Sequence[Any],
        encode: Callable[[Any], bytes],
        *,
        by_identity: bool,
    ) -> Fingerprints:
        """Fingerprint entries (as read by ``containers.entries_of``); lists are kept."""
        prints = cls(by_identity)
        prints._keys = _kept(keys)
        prints._prints = prints._print_all(values, encode)
        return prints

    def diff(
        self, keys: Sequence[Any], values: Sequence[Any], encode: Callable[[Any], bytes]
    ) -> ChangeSet:
        """Keys upserted (in the given order) and deleted since these prints."""
        keys = _kept(keys)
        new = self._print_all(values, encode)
        old_keys, old_prints = self._keys, self._prints
        changed = operator.is_not if self.by_identity else operator.ne
        runs, apart_new, apart_old = _align(keys, old_keys)
        # Where the sequences agree, compare prints position by position, in
        # C, at most SLICE positions a step.
        at = long_lived(len(keys))
        for i, j, run in zip(*runs):
            for offset in range(0, run, SLICE):
                size = min(SLICE, run - offset)
                pairs = map(
                    changed,
                    itertools.islice(_iter_from(new, i + offset), size),
                    _iter_from(old_prints, j + offset),
                )
                at.extend(itertools.compress(range(i + offset, i + offset + size), pairs))
                pace()
        # Where they part, look keys up by hash, as a dict would.
        gone = KeyTable(len(apart_old))
        scattered = min(SLICE, SCATTERED_SLICE)
        for part in parts(apart_old, scattered):
            gone.update(gather(old_keys, part), gather(old_prints, part))
            pace()
        found: Sequence[int] = at
        if apart_new:
            extra: list[int] = []
            for part in parts(apart_new, scattered):
                pairs = map(changed, gone.get_all(gather(keys, part)), gather(new, part))
                extra.extend(itertools.compress(part, pairs))
                pace()
            found = _merged(at, extra)
        upserts = _picked(keys, found)
        deletes: set[Any] = set()
        if len(gone):
            present = KeyTable(len(apart_new))
            for part in parts(apart_new, scattered):
                present.update(gather(keys, part), itertools.repeat(None))
                pace()
            for batch in gone.batches():
                deletes.update(present.missing(batch))
            present.release()
        gone.release()
        changes = ChangeSet(upserts=upserts, deletes=deletes)
        self._pending = (keys, new, changes, found)
        # The alignment's lists (a million positions when the orders part).
        run_new, run_old, run_len = runs
        del runs
        drop(run_new)
        drop(run_old)
        drop(run_len)
        drop(apart_new)
        drop(apart_old)
        return changes

    def positions(self, changes: ChangeSet) -> Sequence[int]:
        """Where the upserts of the last :meth:`diff` sit in the entries it read.

        A delta takes the upserted values from that same read: values read
        again later could pair a change set of one moment with the mapping of
        another, while a thread writes.
        """
        if self._pending is None or self._pending[2] is not changes:
            msg = "Expected the change set of the last diff"
            raise ValueError(msg)
        return self._pending[3]

    def update(
        self,
        keys: Sequence[Any],
        values: Sequence[Any],
        changes: ChangeSet,
        encode: Callable[[Any], bytes],
    ) -> None:
        """Advance these prints past a committed delta.

        ``keys``/``values`` are the upserted entries written. When they are the
        upserts of the last :meth:`diff`, with the values it read (taken at
        :meth:`positions`), that read is adopted as is: O(1).
        """
        pending, self._pending = self._pending, None
        old_keys, old_prints = self._keys, self._prints
        same = keys is changes.upserts or keys == changes.upserts
        if pending is not None and pending[2] is changes and same:
            self._keys, self._prints = pending[0], pending[1]
        else:
            # Any other change set: through a dict, a slice at a time.
            fresh = self._print_all(values, encode)
            seen: dict[Any, Any] = {}
            for key_part, print_part in zip(parts(old_keys), parts(old_prints)):
                seen.update(zip(key_part, print_part))
                pace()
            for key in itertools.chain(changes.deletes, changes.upserts):
                seen.pop(key, None)
            seen.update(zip(keys, fresh))
            new_keys, new_prints = long_lived(len(seen)), long_lived(len(seen))
            it = iter(seen.items())
            while chunk := list(itertools.islice(it, SLICE)):
                new_keys.extend(map(operator.itemgetter(0), chunk))
                new_prints.extend(map(operator.itemgetter(1), chunk))
                pace()
            self._keys, self._prints = new_keys, new_prints
            drop(seen)
        # The lists of the previous read: freed a slice at a time.
        drop(old_keys)
        drop(old_prints)

    def release(self) -> None:
        """Forget every print, freeing the lists a slice at a time (a million entries each)."""
        keys, prints, self._keys, self._prints = self._keys, self._prints, [], []
        pending, self._pending = self._pending, None
        drop(keys)
        drop(prints)
        del keys, prints
        if pending is not None:
            read_keys, read_prints, _, at = pending
            del pending
            drop(read_keys)
            drop(read_prints)
            drop(at)

    def bytes_per_entry(self) -> float:
        """Approximate memory this record costs per entry (for the docs)."""
        import sys  # noqa: PLC0415 - diagnostics only

        if not self._keys:
            return 0.0
        per_slot = (sys.getsizeof(self._keys) + sys.getsizeof(self._prints)) / len(self._keys)
        if self.by_identity:
            return per_slot
        return per_slot + sys.getsizeof(self._prints[0])


#: Positions searched ahead of a mismatch for the next agreement.
_RESYNC_WINDOW = 32
#: First and largest slice compared at once when measuring a run of equal keys
#: (the largest bounds the copy a compare makes).
_RUN_FIRST = 32
_RUN_MAX = 4096
#: First and largest window searched at once past the resync window (the
#: largest, 16,384 key compares in C, takes 0.1-0.4 ms).
_GALLOP_FIRST = 512
_GALLOP_MAX = 16384
#: Positions in a row the near searches miss before a long search: two keys
#: that changed places cost two misses and no long search, which on a
#: million keys scans up to 131,072 positions.
_MISSED_BEFORE_LONG = 3
#: How far ahead in the new read the keys searched for when both reads
#: changed at the same place (neither next key is found) are.
_PROBES = (64, 512, 4096)
#: Keys read after a match found past the resync window that must mostly
#: agree (see _goes_on).
_CONFIRM = 8
#: How far past the resync window a match counts without the keys after it
#: agreeing: clusters of evictions in a table's order, with a few survivors
#: between them, are a few hundred keys long.
_GALLOP_NEAR = 4096
#: Positions one long search may scan: gaps longer than this (more than
#: 65,536 evictions between two checkpoints) are left to the hash lookups.
_GALLOP_REACH = 65536


def _kept(items: Sequence[Any]) -> Sequence[Any]:
    """``items`` as they are when a list or Pieces (kept, not copied), else listed."""
    return items if type(items) in (list, Pieces) else list(items)


def _picked(items: Sequence[Any], at: Sequence[int]) -> Pieces:
    out = long_lived(len(at))
    for part in parts(at, min(SLICE, SCATTERED_SLICE)):
        out.extend(gather(items, part))
        pace()
    return out


def _merged(a: Sequence[int], b: list[int]) -> Sequence[int]:
    """Two ascending sequences of positions as one (in bounded steps)."""
    if len(a) + len(b) <= 4 * SLICE:
        return sorted([*a, *b])  # two runs: timsort merges them in one pass
    out = long_lived(len(a) + len(b))
    merged = heapq.merge(a, b)
    while chunk := list(itertools.islice(merged, SLICE)):
        out.extend(chunk)
        pace()
    return out


def _same(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """``a == b``, a slice at a time (identical objects compare by address, in C)."""
    if len(a) != len(b):
        return False
    for mine, theirs in zip(parts(a), parts(b)):
        if mine != theirs:
            return False
        pace()
    return True


def _iter_from(items: Sequence[Any], start: int) -> Iterator[Any]:
    """Iterate ``items[start:]`` without copying it (a list iterator moved on)."""
    if type(items) is Pieces:
        return items.iter_from(start)
    it: Any = iter(items)
    it.__setstate__(start)
    return it  # type: ignore[no-any-return]


def _run(new: Sequence[Any], i: int, old: Sequence[Any], j: int) -> int:
    """How many keys from ``new[i]`` and ``old[j]`` on are equal, pairwise (in C).

    Runs are long (hundreds of keys between two deletions when 1% of a
    million changed), so slices are compared, doubling in size while they
    agree: a slice compare checks identity before equality and costs less
    than a pairwise ``map``. The slice that failed is halved with slice
    compares down to ``_RUN_FIRST`` positions, searched pairwise.
    """
    limit = min(len(new) - i, len(old) - j)
    done, size = 0, _RUN_FIRST
    while done < limit:
        size = min(size, limit - done)
        a, b = i + done, j + done
        if new[a : a + size] != old[b : b + size]:
            # The first disagreement is in this slice: halve it with slice compares.
            lo, hi = 0, size
            while hi - lo > _RUN_FIRST:
                mid = (lo + hi) // 2
                if new[a + lo : a + mid] == old[b + lo : b + mid]:
                    lo = mid
                else:
                    hi = mid
            pairs = map(operator.ne, _iter_from(new, a + lo), _iter_from(old, b + lo))
            return done + lo + operator.indexOf(pairs, True)
        done += size
        size = min(size * 2, _RUN_MAX)
        pace()
    return limit


def _index(items: Sequence[Any], item: Any, start: int, stop: int) -> int | None:
    """Where ``item`` is in ``items[start:stop]`` (searched in C), or None."""
    try:
        return items.index(item, start, stop)
    except ValueError:
        return None


def _align(
    keys: Sequence[Any], old_keys: Sequence[Any]
) -> tuple[tuple[Sequence[int], Sequence[int], Sequence[int]], Sequence[int], Sequence[int]]:
    """Line ``keys`` up with ``old_keys``: the runs that agree, and what is left apart.

    Returns the runs as three lists ``(i, j, length)`` where ``keys[i + k] ==
    old_keys[j + k]`` (lists of ints, not tuples: the collector ignores ints, so
    thousands of runs trigger no collection that would walk the million-entry
    lists), then the positions of ``keys`` and of ``old_keys`` in no run. Runs are
    found greedily; at a mismatch a short window ahead in each sequence is
    searched for the next agreement. When the sequences part too often (a
    reordered cache) the rest is left apart, to be looked up by hash.
    """
    n, m = len(keys), len(old_keys)
    if _same(keys, old_keys):  # nothing inserted, deleted or moved: compares in C
        return ([0], [0], [n]) if n else ([], [], []), [], []
    run_new, run_old, run_len = long_lived_lists(n)
    apart_new, apart_old = long_lived(n), long_lived(n)
    i = j = 0
    budget = 64 + n // 64
    # Positions the long searches may scan in all (see _gallop).
    scan = 2 * (n + m) + _GALLOP_REACH
    # Positions in a row where the near searches found nothing: one or two
    # are keys that changed places (both apart, then the runs go on), more
    # a long gap, searched for further ahead.
    missed = 0
    while i < n and j < m:
        run = _run(keys, i, old_keys, j)
        if run:
            run_new.append(i)
            run_old.append(j)
            run_len.append(run)
            i += run
            j += run
            missed = 0
            if i == n or j == m:
                break
        # keys[i] != old_keys[j]: find where the sequences meet again.
        pace()
        budget -= 1
        if budget < 0:
            break
        allowed = scan if missed >= _MISSED_BEFORE_LONG else 0
        meet, scanned = _resync(keys, i, old_keys, j, allowed)
        scan -= scanned
        if meet is None:
            apart_new.append(i)
            apart_old.append(j)
            i += 1
            j += 1
            missed += 1
            continue
        # Keys between here and where they meet are apart: new keys that
        # came in between, or old ones that dropped out (deleted, moved).
        _extend_paced(apart_new, i, meet[0])
        _extend_paced(apart_old, j, meet[1])
        i, j = meet
    _extend_paced(apart_new, i, n)
    _extend_paced(apart_old, j, m)
    return (run_new, run_old, run_len), apart_new, apart_old


def _extend_paced(positions: Pieces, start: int, stop: int) -> None:
    """Append ``range(start, stop)`` to ``positions``, a slice a step."""
    for first in range(start, stop, SLICE):
        positions.extend(range(first, min(first + SLICE, stop)))
        pace()


def _resync(
    keys: Sequence[Any], i: int, old_keys: Sequence[Any], j: int, allowed: int
) -> tuple[tuple[int, int] | None, int]:
    """Where the sequences meet again after ``keys[i] != old_keys[j]``, and positions scanned.

    Returns ``(i2, j2)``: ``keys[i:i2]`` and ``old_keys[j:j2]`` are apart and
    ``keys[i2] == old_keys[j2]``. Tried in turn, within ``_RESYNC_WINDOW``:
    ``keys[i]`` ahead in the old keys (old keys dropped out), ``old_keys[j]``
    ahead in the new (new keys came in between), ``keys[i + 1]`` ahead in
    the old (``keys[i]`` took the place of old keys: a key read last in one
    read and in its place in the other). Then, for a long gap (an LRU
    cache's evictions all come off its front), each of the first two in
    growing windows up to ``_GALLOP_NEAR`` positions ahead, and keys
    ``_PROBES`` further on in the new read (both reads changed here); then
    the first two up to ``_GALLOP_REACH``; at most ``allowed`` positions in
    all. A match past ``_GALLOP_NEAR`` counts only where the keys after it
    mostly agree too (``_goes_on``): a key found alone there moved, and
    taking it would leave everything in between apart.
    """
    n, m = len(keys), len(old_keys)
    found = _index(old_keys, keys[i], j + 1, min(j + 1 + _RESYNC_WINDOW, m))
    if found is not None:
        return (i, found), 0
    found = _index(keys, old_keys[j], i + 1, min(i + 1 + _RESYNC_WINDOW, n))
    if found is not None:
        return (found, j), 0
    if i + 1 < n:
        found = _index(old_keys, keys[i + 1], j, min(j + 1 + _RESYNC_WINDOW, m))
        if found is not None:
            return (i + 1, found), 0
    # Near first (up to _GALLOP_NEAR positions ahead), then far: a block
    # that is in both reads, read last in one of them, must not win over
    # the rest of the table just past the place where both reads changed.
    scanned = 0
    for reach in (_GALLOP_NEAR, _GALLOP_REACH):
        tries = [
            (True, i, old_keys, j + 1 + _RESYNC_WINDOW),
            (False, j, keys, i + 1 + _RESYNC_WINDOW),
        ]
        if reach == _GALLOP_NEAR:
            # Both reads changed here (keys no longer hot in the new read
            # where the old has evicted ones): keys further on in the new.
            tries += [(True, i + step, old_keys, j) for step in _PROBES if i + step < n]
        for in_old, at, items, start in tries:
            if scanned >= allowed:
                return None, scanned
            ahead = keys[at : at + _CONFIRM] if in_old else old_keys[at : at + _CONFIRM]
            found, count = _gallop(items, ahead[0], start, min(allowed - scanned, reach), ahead)
            scanned += count
            if found is not None:
                return ((at, found) if in_old else (found, at)), scanned
    return None, scanned


def _gallop(
    items: Sequence[Any], item: Any, start: int, allowed: int, ahead: Sequence[Any]
) -> tuple[int | None, int]:
    """Where ``items[start:]`` goes on as ``ahead`` (whose first key is ``item``).

    Searched for ``item`` in growing windows; a match within
    ``_GALLOP_NEAR`` positions counts (keys of a read in one order do not
    move a little: a hot key moves to the other end), one further only
    where the keys after it mostly are those of ``ahead`` (``_goes_on``;
    a run of evictions off the front leaves them all). Returns the
    position (or None) and how many positions were searched: at most
    ``allowed``, so that keys that are nowhere (new ones) cannot make the
    alignment quadratic. Each window is one C search of at most
    ``_GALLOP_MAX`` positions, paced between.
    """
    size, scanned = _GALLOP_FIRST, 0
    near = start + _GALLOP_NEAR
    while start < len(items) and scanned < allowed:
        stop = min(start + size, len(items), start + allowed - scanned)
        found = _index(items, item, start, stop)
        if found is None:
            scanned += stop - start
            start = stop
            size = min(size * 8, _GALLOP_MAX)
        elif found < near or _goes_on(items, found, ahead):
            return found, scanned + found + 1 - start
        else:  # the key alone: search on past it
            scanned += found + 1 - start
            start = found + 1
        pace()
    return None, scanned


def _goes_on(items: Sequence[Any], found: int, ahead: Sequence[Any]) -> bool:
    """Whether ``items`` from ``found`` on read as ``ahead`` does, give or take a change.

    At least half of the keys after ``ahead[0]`` must be among the next
    ``2 * len(ahead)`` keys of ``items``: a key that moved alone (read last
    in one read) has other keys around it in each, while a real meeting
    point survives a change or two nearby.
    """
    if len(ahead) < 2:
        return True
    near = set(items[found + 1 : found + 1 + 2 * len(ahead)])
    return 2 * sum(map(near.__contains__, ahead[1:])) >= len(ahead) - 1


def deeply_immutable(tp: Any) -> bool:
    """Whether values of Struct type ``tp`` can never change in place.

    Only then does an unchanged reference prove unchanged content: a frozen
    Struct with a ``list`` field can still be mutated in place, so it must be
    diffed by hash, not by identity.
    """
    cached = _IMMUTABLE.get(tp)
    if cached is None:
        cached = _IMMUTABLE[tp] = _immutable_info(msgspec.inspect.type_info(tp), set())
    return cached


_IMMUTABLE: dict[Any, bool] = {}


def _immutable_info(info: Any, visiting: set[int]) -> bool:  # noqa: PLR0911 - one per kind
    mi = msgspec.inspect
    scalars = (
        mi.NoneType, mi.BoolType, mi.IntType, mi.FloatType, mi.StrType, mi.BytesType,
        mi.DateTimeType, mi.DateType, mi.TimeType, mi.TimeDeltaType, mi.UUIDType,
        mi.DecimalType, mi.LiteralType, mi.EnumType,
    )  # fmt: skip
    if isinstance(info, scalars):
        return True
    if isinstance(info, (mi.VarTupleType, mi.FrozenSetType)):
        return _immutable_info(info.item_type, visiting)
    if isinstance(info, (mi.TupleType, mi.UnionType)):
        parts = info.item_types if isinstance(info, mi.TupleType) else info.types
        return all(_immutable_info(part, visiting) for part in parts)
    if isinstance(info, mi.NamedTupleType):  # a tuple: never changes in place
        return all(_immutable_info(f.type, visiting) for f in info.fields)
    if isinstance(info, mi.StructType):
        if id(info) in visiting:  # a recursive type: decided by its other fields
            return True
        if not getattr(info.cls.__struct_config__, "frozen", False):
            return False
        visiting.add(id(info))
        return all(_immutable_info(f.type, visiting) for f in info.fields)
    return False  # lists, dicts, sets, Any, dataclasses...: mutable or unknown
