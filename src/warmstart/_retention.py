"""Retention and garbage collection: which generations and chunks a store keeps.

Private; used by ``store`` and ``_commit``. Every commit keeps the newest
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
from typing import TYPE_CHECKING, Any

from warmstart._records import (
    NSID,
    check_namespace,
    manifest_key,
    manifest_keys,
    namespace_ids,
    namespace_name,
    prefixed,
    quarantine_key,
    shown,
)
from warmstart.errors import IntegrityError
from warmstart.manifest import Manifest

if TYPE_CHECKING:
    from warmstart.store import Store

__all__ = ()

log = logging.getLogger("warmstart.store")  # one logger for the whole store


def retain(store: Store, txn: Any, nsid: bytes, newest: Manifest) -> None:
    """Drop generations beyond ``keep`` and sweep chunks none references.

    ``newest`` was just written with a number above every stored one, so
    it is never among those dropped.
    """
    generations, malformed = manifest_keys(txn, store._db("manifests"), nsid)
    expired = generations[store.keep :]
    if not expired:
        return
    manifests, meta = store._db("manifests"), store._db("meta")
    namespace = newest.namespace
    # Every generation under this id is this namespace's: a commit refuses an
    # id whose newest generation another namespace holds (``_commit``).
    for generation in expired:
        txn.delete(manifest_key(nsid, generation), db=manifests)
        txn.delete(quarantine_key(namespace, generation), db=meta)  # its record goes too
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
    for generation in generations[1 : store.keep]:
        try:
            marked |= store._read_manifest(txn, nsid, generation, namespace).digests()
        except IntegrityError:
            # A damaged manifest cannot say what it references: keep every
            # chunk rather than risk deleting one a generation needs.
            log.warning("generation %d is damaged; garbage collection skipped", generation)
            return
    sweep(store, txn, nsid, marked)


def sweep(store: Store, txn: Any, nsid: bytes, marked: set[bytes]) -> int:
    """Delete the namespace's chunks whose digest is not ``marked``; return how many."""
    chunks = store._db("chunks")
    doomed = [key for key, _ in prefixed(txn, chunks, nsid) if key[len(nsid) :] not in marked]
    for key in doomed:
        txn.delete(key, db=chunks)
    return len(doomed)


def collect(store: Store, txn: Any) -> int:
    """Mark and sweep every namespace id; return how many chunks were freed."""
    freed = 0
    # Every namespace id, with or without a head: an import killed
    # before its commit leaves chunks under an id that has no head.
    for name, number in list(namespace_ids(txn, store._db("meta"))):
        # Only named in logs and checked against manifests: any bytes do.
        namespace = namespace_name(name)
        printed = shown(name)
        if number is None:
            log.warning("namespace %r: damaged id record, not collected", printed)
            continue
        nsid = NSID.pack(number)
        generations, malformed = manifest_keys(txn, store._db("manifests"), nsid)
        if malformed:
            log.warning("namespace %r: malformed manifest keys, not collected", printed)
            continue
        marked: set[bytes] = set()
        for generation in generations:
            try:
                manifest = store._read_manifest(txn, nsid, generation, namespace)
            except IntegrityError:
                log.warning("namespace %r: damaged manifest, not collected", printed)
                break
            marked |= manifest.digests()
        else:
            freed += sweep(store, txn, nsid, marked)
    return freed


def drop_data(store: Store, txn: Any, namespace: str, nsid: bytes) -> None:
    """Delete the manifests and chunks under ``nsid``, unless another namespace claims it."""
    nsbytes = check_namespace(namespace)
    claimed = {number for name, number in namespace_ids(txn, store._db("meta")) if name != nsbytes}
    if NSID.unpack(nsid)[0] in claimed:
        log.warning(
            "namespace %r: another namespace has the same id; its manifests and chunks kept",
            namespace,
            extra={"namespace": namespace},
        )
        return
    manifests = store._db("manifests")
    for key in [key for key, _ in prefixed(txn, manifests, nsid)]:
        txn.delete(key, db=manifests)
    sweep(store, txn, nsid, set())
