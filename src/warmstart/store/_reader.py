"""A read-only view of a store's records, in one read transaction.

For the wings that move or show generations as stored (``transfer`` exports,
``remote`` pushes, ``cli`` inspects): what ``Store.load`` does for a service,
verifying and replaying a generation, they do not need; what they need is a
manifest as stored, frames by digest and which chunks are present, all from
one consistent moment. Obtained from ``Store.read()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from warmstart.errors import CheckpointNotFoundError, IntegrityError, WarmstartError
from warmstart.manifest import ChunkRef, Manifest
from warmstart.store._commit import identical
from warmstart.store._tables import Tables

__all__ = ("Reader",)


class Reader:
    """Records of one store, read in one transaction (valid inside ``Store.read()``)."""

    def __init__(self, tables: Tables, txn: Any) -> None:
        self._tables = tables
        self._txn = txn

    def _nsid(self, namespace: str) -> bytes | None:
        return self._tables.nsid(self._txn, namespace, create=False)

    def head(self, namespace: str) -> tuple[int, str] | None:
        """(generation, lineage) of the namespace's head, or None.

        Raises:
            IntegrityError: the head or namespace id record is damaged.
        """
        if self._nsid(namespace) is None:
            return None
        return self._tables.head(self._txn, namespace)

    def missing(self, namespace: str) -> str:
        """The message for a namespace this store lacks, naming those it holds."""
        return self._tables.missing_namespace(self._txn, namespace)

    def generations(self, namespace: str) -> list[int]:
        """Generations stored for ``namespace``, newest first."""
        nsid = self._nsid(namespace)
        return [] if nsid is None else self._tables.generations(self._txn, nsid)

    def stored_manifest(self, namespace: str, generation: int) -> tuple[bytes, Manifest]:
        """A generation's manifest record as stored, and verified.

        Raises:
            CheckpointNotFoundError: no such generation.
            IntegrityError: the record is damaged.
        """
        nsid = self._nsid(namespace)
        if nsid is None:
            msg = self._tables.missing_namespace(self._txn, namespace)
            raise CheckpointNotFoundError(msg)
        return self._tables.stored_manifest(self._txn, nsid, generation, namespace)

    def manifest(self, namespace: str, generation: int) -> Manifest:
        """A generation's manifest, verified (see :meth:`stored_manifest`)."""
        return self.stored_manifest(namespace, generation)[1]

    def created_at(self, namespace: str) -> float | None:
        """When the head generation was saved; None without a readable head."""
        head = self._tables.readable_head(self._txn, namespace)
        if head is None:
            return None
        try:
            return self.manifest(namespace, head[0]).created_at
        except (IntegrityError, CheckpointNotFoundError):
            return None

    def frame(self, namespace: str, ref: ChunkRef) -> memoryview | None:
        """A chunk's frame verified against ``ref`` (digest, MAC, size); None if absent.

        Raises:
            IntegrityError: the stored frame does not match ``ref``.
        """
        nsid = self._nsid(namespace)
        return None if nsid is None else self._tables.checked_chunk(self._txn, nsid, ref)

    def frames(
        self,
        namespace: str,
        refs: Iterable[ChunkRef],
        *,
        missing: type[WarmstartError] = IntegrityError,
        hint: str = "run `warmstart verify`",
    ) -> Iterator[tuple[ChunkRef, memoryview]]:
        """(ref, verified frame) for each of ``refs``, in order.

        Raises:
            IntegrityError: a frame does not match its reference.
            ``missing``: a chunk is absent (the message ends with ``hint``).
        """
        for ref in refs:
            frame = self.frame(namespace, ref)
            if frame is None:
                msg = (
                    f"Expected chunk {ref.digest.hex()} of namespace {namespace!r} in "
                    f"{self._tables.where}, it is missing; {hint}"
                )
                raise missing(msg)
            yield ref, frame

    def present(self, namespace: str, digests: set[bytes]) -> set[bytes]:
        """Which of ``digests`` the namespace holds."""
        nsid = self._nsid(namespace)
        if nsid is None:
            return set()
        return {d for d in digests if self._tables.chunk(self._txn, nsid, d) is not None}

    def identical(self, namespace: str, manifest: Manifest) -> int | None:
        """The stored generation holding the same state as ``manifest``, if any."""
        nsid = self._nsid(namespace)
        return None if nsid is None else identical(self._tables, self._txn, nsid, manifest)
