"""One inbound path for a generation that comes from elsewhere: an import or a pull.

Chunks arrive first, in batches of write transactions (each chunk verified by
the caller against its reference); then one transaction checks that every
chunk the manifest references is present and writes the manifest and the
head (``_commit.adopt``). Until that commit nothing of the generation is
visible, and chunks written meanwhile are unreferenced: a concurrent save's
garbage collection may sweep them, which the commit reports as missing so the
caller can write them again. Obtained from ``Store.inbound()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

from warmstart.errors import CheckpointNotFoundError, IntegrityError
from warmstart.manifest import Manifest
from warmstart.store._commit import adopt
from warmstart.store._tables import Tables

__all__ = ("Inbound",)

Outcome = tuple[Literal["adopted", "present"], int] | set[bytes]


class Inbound:
    """A foreign ``manifest`` being committed as a generation of ``namespace``.

    Args:
        tag, source: the manifest's ``tags[tag]`` records ``source`` (where it came from).
        keep: the store's retention.
        forget: called after an adoption: deltas computed against the previous
            head can no longer commit.
    """

    def __init__(
        self,
        tables: Tables,
        namespace: str,
        manifest: Manifest,
        *,
        tag: str,
        source: str,
        keep: int,
        forget: Callable[[str], None],
    ) -> None:
        self._tables = tables
        self.namespace = namespace
        self.manifest = manifest
        self._tag = tag
        self._source = source
        self._keep = keep
        self._forget = forget
        #: Chunks this inbound wrote, and whether it gave the namespace its id.
        self._written: set[bytes] = set()
        self._made_id = False

    def put(self, frames: Iterable[tuple[bytes, bytes]]) -> dict[bytes, int]:
        """Write the frames the namespace lacks, in one transaction: {digest: bytes written}."""
        batch = list(frames)
        if not batch:
            return {}
        return self._tables.write(lambda txn: self._put(txn, batch))

    def _put(self, txn: Any, batch: list[tuple[bytes, bytes]]) -> dict[bytes, int]:
        nsid = self._tables.nsid(txn, self.namespace, create=False)
        if nsid is None:
            nsid = self._tables.nsid(txn, self.namespace, create=True)
            self._made_id = True
        assert nsid is not None
        written = {
            digest: len(frame)
            for digest, frame in batch
            if self._tables.put_chunk(txn, nsid, digest, frame)
        }
        self._written.update(written)
        return written

    def discard(self) -> int:
        """Take back what this inbound wrote, for a generation that will not be committed.

        A pull refused half-way (a chunk that fails its check, an object too
        large) had written the batches before it: the chunks no stored
        generation references are deleted, and so is the namespace id it
        created if nothing else came to use it, so a refused input leaves the
        store as it was (issue 17). An interrupted pull or import keeps its
        batches instead (a rerun skips them). Returns the chunks deleted.
        """
        if not self._written:
            return 0
        written, self._written = self._written, set()
        return self._tables.write(lambda txn: self._discard(txn, written))

    def _discard(self, txn: Any, written: set[bytes]) -> int:
        tables = self._tables
        nsid = tables.nsid(txn, self.namespace, create=False)
        if nsid is None:
            return 0
        referenced: set[bytes] = set()
        for generation in tables.generations(txn, nsid):
            try:
                referenced |= tables.manifest(txn, nsid, generation, self.namespace).digests()
            except (IntegrityError, CheckpointNotFoundError):
                return 0  # what a damaged manifest references is unknown: keep all
        deleted = tables.delete_chunks(txn, nsid, written - referenced)
        unused = not referenced and not tables.has_head(txn, self.namespace)
        if self._made_id and unused and next(tables.chunk_digests(txn, nsid), None) is None:
            tables.unmake_namespace(txn, self.namespace, nsid)
        return deleted

    def commit(self, frames: Iterable[tuple[bytes, bytes]] = ()) -> Outcome:
        """Write ``frames`` if absent, then the manifest and head, in one transaction.

        Returns ("adopted" or "present", generation), or the digests still
        missing (then nothing of the manifest or head was written).
        """
        batch = list(frames)

        def body(txn: Any) -> Outcome:
            if batch:
                self._put(txn, batch)
            return adopt(
                self._tables,
                txn,
                self.namespace,
                self.manifest,
                tag=self._tag,
                source=self._source,
                keep=self._keep,
            )

        outcome = self._tables.write(body)
        if isinstance(outcome, tuple) and outcome[0] == "adopted":
            self._forget(self.namespace)
        return outcome
