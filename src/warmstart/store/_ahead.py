"""Writing a large save's chunks ahead of its commit, a few megabytes per transaction.

Private to the store wing; used by ``Store.save``. A full save of a million
records is 24 MB of chunks; in one transaction it would hold the store's
writer lock, which other processes' saves wait for, through 100 ms or more
of writes and an fsync. So the chunks of a save larger than ``BATCH`` go in
first, ``BATCH`` bytes per transaction, pacing between them, and the save's
own transaction then finds them present (``put_chunk`` never overwrites)
and writes only the manifest and head. (The binding lets go of the GIL in
its puts and commits: the service's threads run meanwhile either way.)

Safe because chunks are content-addressed and only a manifest makes them
reachable: until the commit they are orphans, as after a crash. If another
process's save sweeps them away in between, the commit (which puts every
chunk of the generation, with ``overwrite=False``) writes them again, in
the same transaction as the manifest, so a committed generation never lacks
a chunk. If the save fails (a full disk), :func:`sweep` deletes the
namespace's chunks no manifest references, as garbage collection does, so
that the failed save leaves no space taken.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from warmstart._pacing import pace
from warmstart.errors import IntegrityError
from warmstart.manifest import ChunkRef
from warmstart.store._tables import Tables

__all__ = ()

log = logging.getLogger("warmstart.store")

#: Bytes of chunks per transaction written ahead. Timed at each commit of a
#: million-record save (issue 15): 2 MB took 1.7-4.5 ms of CPU (median) and
#: up to 9.7 ms; 1 MB 0.7-0.8 ms and at most 1.5 ms, for about the same total.
BATCH = 1 << 20


def write_ahead(
    tables: Tables,
    namespace: str,
    frames: Sequence[tuple[ChunkRef, bytes]],
    batch: int | None = None,
) -> int:
    """Put ``frames`` in transactions of about ``batch`` (``BATCH``) bytes; return how many.

    Nothing happens when they fit in one batch: the save's commit writes them.
    """
    batch = BATCH if batch is None else batch
    if sum(len(frame) for _, frame in frames) <= batch:
        return 0
    nsid = tables.write(lambda txn: tables.nsid(txn, namespace, create=True))
    assert nsid is not None
    transactions = 0
    start = 0
    while start < len(frames):
        size, stop = 0, start
        while stop < len(frames) and (size < batch or stop == start):
            size += len(frames[stop][1])
            stop += 1
        part = frames[start:stop]

        def put(txn: Any, part: Sequence[tuple[ChunkRef, bytes]] = part) -> None:
            for ref, frame in part:
                tables.put_chunk(txn, nsid, ref.digest, frame)

        tables.write(put)
        transactions += 1
        start = stop
        pace()
    return transactions


def sweep(tables: Tables, namespace: str) -> int:
    """Delete ``namespace``'s chunks that no manifest references; return how many.

    After a save that wrote chunks ahead failed: best effort (a full disk may
    refuse even this transaction), and nothing is deleted when a manifest
    cannot be read (it may reference anything).
    """

    def body(txn: Any) -> int:
        nsid = tables.nsid(txn, namespace, create=False)
        if nsid is None:
            return 0
        generations, malformed = tables.manifest_keys(txn, nsid)
        if malformed:
            return 0
        marked: set[bytes] = set()
        for generation in generations:
            try:
                marked |= tables.manifest(txn, nsid, generation, namespace).digests()
            except IntegrityError:
                return 0
        return tables.sweep(txn, nsid, marked)

    try:
        return tables.write(body)
    except Exception as exc:  # the save's own error is the one to raise
        log.warning(
            "namespace %r: chunks written ahead of a failed save not collected: %s",
            namespace,
            exc,
            extra={"namespace": namespace},
        )
        return 0
