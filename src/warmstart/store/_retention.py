"""Retention and garbage collection: which generations and chunks a store keeps.

Private to the store wing; used by ``Store`` and ``_commit``. Every commit keeps the newest
``keep`` generations of its namespace, drops the manifests of older ones and
sweeps the chunks no retained generation references, inside the commit's
write transaction. ``gc`` marks and sweeps every namespace the same way;
``drop`` deletes all of one namespace's records.

Deleting is the one thing here that cannot be undone, so whenever the store
cannot tell what a generation references (a damaged manifest, a malformed
manifest key, a damaged namespace id, an id two namespaces claim) it keeps
every chunk and logs why, rather than risk one a generation needs.
"""

from __future__ import annotations

import logging
from typing import Any

from warmstart.errors import CheckpointNotFoundError, IntegrityError
from warmstart.manifest import Manifest
from warmstart.store._records import NSID, check_namespace, namespace_name, shown
from warmstart.store._tables import Tables

__all__ = ()

log = logging.getLogger("warmstart.store")  # one logger for the whole store


#: A quarantined generation stays out of ``keep``'s count for this long, for
#: inspection, then retention drops it (``release_quarantine`` returns it sooner).
QUARANTINE_MAX_AGE = 7 * 86400.0


def retain(tables: Tables, txn: Any, nsid: bytes, newest: Manifest, keep: int) -> None:
    """Drop generations beyond ``keep`` and sweep chunks none references.

    ``newest`` was just written with a number above every stored one, so
    it is never among those dropped. Quarantined generations do not count
    toward ``keep`` (they would push good ones out, and be dropped before
    anyone looked at them): they stay until released, or until they are
    older than :data:`QUARANTINE_MAX_AGE` (by ``newest``'s clock).
    """
    generations, malformed = tables.manifest_keys(txn, nsid)
    namespace = newest.namespace
    quarantined = tables.quarantined(txn, namespace)
    expired = _expired(tables, txn, nsid, newest, generations, quarantined, keep)
    if not expired:
        return
    # Every generation under this id is this namespace's: a commit refuses an
    # id whose newest generation another namespace holds (``_commit``).
    for generation in expired:
        tables.expire(txn, nsid, namespace, generation)  # its quarantine record goes too
    if malformed:
        # A manifest under a malformed key may still reference chunks.
        log.warning(
            "namespace %r: %d malformed manifest keys; garbage collection skipped",
            namespace,
            len(malformed),
            extra={"namespace": namespace},
        )
        return
    marked = newest.digests()
    for generation in generations:
        if generation == newest.generation or generation in expired:
            continue
        try:
            marked |= tables.manifest(txn, nsid, generation, namespace).digests()
        except IntegrityError:
            # A damaged manifest cannot say what it references: keep every
            # chunk rather than risk deleting one a generation needs.
            log.warning("generation %d is damaged; garbage collection skipped", generation)
            return
    tables.sweep(txn, nsid, marked)


def _expired(
    tables: Tables,
    txn: Any,
    nsid: bytes,
    newest: Manifest,
    generations: list[int],
    quarantined: dict[int, str],
    keep: int,
) -> set[int]:
    """The generations retention drops: beyond ``keep`` good ones, or quarantined too long."""
    expired: set[int] = set()
    kept = 0
    for generation in generations:  # newest first
        if generation not in quarantined:
            kept += 1
            if kept > keep:
                expired.add(generation)
            continue
        try:
            created = tables.manifest(txn, nsid, generation, newest.namespace).created_at
        except (IntegrityError, CheckpointNotFoundError):
            continue  # kept for inspection: it cannot say how old it is
        if newest.created_at - created > QUARANTINE_MAX_AGE:
            expired.add(generation)
    return expired


def collect(tables: Tables, txn: Any) -> int:
    """Mark and sweep every namespace id; return how many chunks were freed."""
    freed = 0
    # Every namespace id, with or without a head: an import killed
    # before its commit leaves chunks under an id that has no head.
    for name, number in list(tables.namespace_ids(txn)):
        # Only named in logs and checked against manifests: any bytes do.
        namespace = namespace_name(name)
        printed = shown(name)
        if number is None:
            log.warning("namespace %r: damaged id record, not collected", printed)
            continue
        nsid = NSID.pack(number)
        generations, malformed = tables.manifest_keys(txn, nsid)
        if malformed:
            log.warning("namespace %r: malformed manifest keys, not collected", printed)
            continue
        marked: set[bytes] = set()
        for generation in generations:
            try:
                manifest = tables.manifest(txn, nsid, generation, namespace)
            except IntegrityError:
                log.warning("namespace %r: damaged manifest, not collected", printed)
                break
            marked |= manifest.digests()
        else:
            freed += tables.sweep(txn, nsid, marked)
    return freed


def drop_data(tables: Tables, txn: Any, namespace: str, nsid: bytes) -> None:
    """Delete the manifests and chunks under ``nsid``, unless another namespace claims it."""
    nsbytes = check_namespace(namespace)
    claimed = {number for name, number in tables.namespace_ids(txn) if name != nsbytes}
    if NSID.unpack(nsid)[0] in claimed:
        log.warning(
            "namespace %r: another namespace has the same id; its manifests and chunks kept",
            namespace,
            extra={"namespace": namespace},
        )
        return
    tables.expire_all(txn, nsid)
    tables.sweep(txn, nsid, set())
