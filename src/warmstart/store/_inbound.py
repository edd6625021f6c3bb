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

    def put(self, frames: Iterable[tuple[bytes, bytes]]) -> dict[bytes, int]:
        """Write the frames the namespace lacks, in one transaction: {digest: bytes written}."""
        batch = list(frames)
        if not batch:
            return {}
        return self._tables.write(lambda txn: self._put(txn, batch))

    def _put(self, txn: Any, batch: list[tuple[bytes, bytes]]) -> dict[bytes, int]:
        nsid = self._tables.nsid(txn, self.namespace, create=True)
        assert nsid is not None
        return {
            digest: len(frame)
            for digest, frame in batch
            if self._tables.put_chunk(txn, nsid, digest, frame)
        }

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
