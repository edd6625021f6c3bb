"""The one owner of the store's four LMDB tables.

Private to the store wing. Every read and write of a record goes through
:class:`Tables`; the layouts themselves are in ``_records``. Other modules of
the store (``_commit``, ``_retention``, the ``Reader`` and ``Inbound``
views) call its methods, never LMDB, and no other wing sees it: the rest of
the library reads through ``Store``, ``Snapshot`` and ``Reader``.

What is read back is untrusted input: a damaged record raises
``IntegrityError`` naming it, and a malformed key is logged and skipped where
a caller can go on without it.

In a keyed store (format 2) the records that decide what a load returns and
are not frames, heads and quarantine records, are sealed with the store's
secret (``Codec.seal``): one written without it (forged, or by a 0.1
process) reads as damaged (a head) or is ignored (a quarantine record). The
format is read in every transaction, so a process sees another one upgrade
the store as soon as it commits.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from warmstart.codec import MAC_SIZE, SEAL_HEAD, SEAL_QUARANTINE, Codec
from warmstart.errors import CheckpointNotFoundError, IntegrityError, StoreFormatError
from warmstart.manifest import ChunkRef, Manifest, encode_manifest
from warmstart.store import _records as records
from warmstart.store._env import FORMAT_KEY, SEALED_FORMAT, Env, read_format

__all__ = ("Tables",)

log = logging.getLogger("warmstart.store")  # one logger for the whole store

R = TypeVar("R")
#: How a transaction reads heads and quarantine records: "sealed" (a keyed
#: store of format 2: MACs checked), "plain" (format 1), "stripped" (format 2
#: read without the secret: MACs skipped, unverified; such a reader may not write).
Sealing = Literal["sealed", "plain", "stripped"]


class Tables:
    """Records of one store: namespace ids, heads, manifests, chunks, quarantine."""

    def __init__(self, env: Env, codec: Codec) -> None:
        self.env = env
        self.codec = codec
        self.where = repr(str(env.path))

    # -- transactions -----------------------------------------------------------

    def read(self) -> contextlib.AbstractContextManager[Any]:
        """A read transaction (LMDB errors become ``StoreError``)."""
        return self.env.read()

    def write(self, body: Callable[[Any], R]) -> R:
        """Run ``body(txn)`` in one write transaction."""
        return self.env.write(body)

    def _db(self, name: str) -> Any:
        return self.env.dbs[name]

    # -- sealed records -----------------------------------------------------------

    def sealing(self, txn: Any) -> Sealing:
        """How ``txn`` reads and writes heads and quarantine records (see ``Sealing``)."""
        meta = self._db("meta")
        stored = None if meta is None else txn.get(FORMAT_KEY, db=meta)
        if read_format(None if stored is None else bytes(stored)) != SEALED_FORMAT:
            return "plain"
        return "sealed" if self.codec.keyed else "stripped"

    def _opened(self, txn: Any, purpose: bytes, key: bytes, raw: Any, what: str) -> bytes:
        """The value of a head or quarantine record, its MAC checked in a sealed store.

        Raises:
            IntegrityError: the record's MAC is missing or wrong (``what`` names it).
        """
        mode = self.sealing(txn)
        if mode == "plain":
            return bytes(raw)
        if mode == "stripped":
            if len(raw) < MAC_SIZE:
                msg = f"Expected {what} in {self.where} to end with a MAC, it is too short"
                raise IntegrityError(msg)
            return bytes(raw[:-MAC_SIZE])
        try:
            return self.codec.unseal(purpose, key, raw)
        except IntegrityError as exc:
            msg = f"Expected {what} in {self.where} to be authentic: {exc}"
            raise IntegrityError(msg) from None

    def _sealed(self, txn: Any, purpose: bytes, key: bytes, value: bytes) -> bytes:
        """``value`` as written: sealed in a keyed store of format 2."""
        mode = self.sealing(txn)
        if mode == "stripped":
            msg = (
                f"Expected a secret to write to the keyed store at {self.where}: its "
                f"records are MAC'd; open it with the store's secret"
            )
            raise StoreFormatError(msg)
        return self.codec.seal(purpose, key, value) if mode == "sealed" else value

    # -- namespace ids ----------------------------------------------------------

    def nsid(self, txn: Any, namespace: str, *, create: bool) -> bytes | None:
        """The namespace's 4-byte id; None when it has none (and ``create`` is false).

        Raises:
            IntegrityError: the id record is damaged.
        """
        key = records.NS_PREFIX + records.check_namespace(namespace)
        meta = self._db("meta")
        if meta is None:
            return None
        found = txn.get(key, db=meta)
        if found is not None:
            return records.decode_nsid(bytes(found), namespace, self.where)
        if not create:
            return None
        nsid = records.NSID.pack(records.last_nsid(txn, meta, self.where) + 1)
        txn.put(records.NS_NEXT, nsid, db=meta)
        txn.put(key, nsid, db=meta)
        return nsid

    def unmake_namespace(self, txn: Any, namespace: str, nsid: bytes) -> None:
        """Forget a namespace id given by mistake; give its number back if it was the last."""
        self.forget_namespace(txn, namespace)
        meta = self._db("meta")
        counter = txn.get(records.NS_NEXT, db=meta)
        if counter is not None and bytes(counter) == nsid:
            previous = records.NSID.unpack(nsid)[0] - 1
            if previous:
                txn.put(records.NS_NEXT, records.NSID.pack(previous), db=meta)
            else:
                txn.delete(records.NS_NEXT, db=meta)

    def namespace_ids(self, txn: Any) -> Iterator[tuple[bytes, int | None]]:
        """(namespace as stored, its id or None if damaged) for every id record."""
        return records.namespace_ids(txn, self._db("meta"))

    def forget_namespace(self, txn: Any, namespace: str) -> None:
        """Delete the namespace's head, id and quarantine records."""
        nsbytes = records.check_namespace(namespace)
        txn.delete(nsbytes, db=self._db("heads"))
        txn.delete(records.NS_PREFIX + nsbytes, db=self._db("meta"))
        for key in self._quarantine_keys(txn, namespace):
            txn.delete(key, db=self._db("meta"))

    # -- heads -------------------------------------------------------------------

    def head(self, txn: Any, namespace: str) -> tuple[int, str] | None:
        """The namespace's head record: (generation, lineage), or None if it has none.

        Raises:
            IntegrityError: the record is too short to hold a generation, or
                (in a keyed store) its MAC is missing or wrong.
        """
        heads = self._db("heads")
        key = records.check_namespace(namespace)
        raw = None if heads is None else txn.get(key, db=heads)
        if raw is None:
            return None
        what = f"the head record of namespace {namespace!r}"
        value = self._opened(txn, SEAL_HEAD, key, raw, what)
        return records.decode_head(value, namespace, self.where)

    def readable_head(self, txn: Any, namespace: str) -> tuple[int, str] | None:
        """The head, or None (logged) when its record is damaged: for reads that go on."""
        try:
            return self.head(txn, namespace)
        except IntegrityError as exc:
            log.warning("namespace %r: %s", namespace, exc, extra={"namespace": namespace})
            return None

    def has_head(self, txn: Any, namespace: str) -> bool:
        """Whether the namespace has a head record at all (damaged or not)."""
        heads = self._db("heads")
        key = records.check_namespace(namespace)
        return heads is not None and txn.get(key, db=heads) is not None

    def namespace_names(self, txn: Any) -> list[str]:
        """Every namespace that has a head, sorted (damaged head keys left out)."""
        return sorted(name for _, name in self.head_keys(txn) if name is not None)

    def missing_namespace(self, txn: Any, namespace: str) -> str:
        """The message for a namespace this store does not hold, naming those it does."""
        names = self.namespace_names(txn)
        shown = ", ".join(map(repr, names[:20])) + (", ..." if len(names) > 20 else "")
        return (
            f"Expected namespace {namespace!r} in {self.where}, found none "
            f"(it holds {shown or 'no namespace'})"
        )

    def head_keys(self, txn: Any) -> Iterator[tuple[bytes, str | None]]:
        """(key, the namespace it names or None if it names none) for every head."""
        return records.head_keys(txn, self._db("heads"))

    # -- manifests --------------------------------------------------------------

    def manifest_keys(self, txn: Any, nsid: bytes) -> tuple[list[int], list[bytes]]:
        """(generations stored for a namespace newest first, keys too malformed to name one)."""
        return records.manifest_keys(txn, self._db("manifests"), nsid)

    def generations(self, txn: Any, nsid: bytes) -> list[int]:
        """Generations stored for a namespace, newest first (malformed keys are logged)."""
        generations, malformed = self.manifest_keys(txn, nsid)
        if malformed:
            log.warning(
                "namespace id %s: %d malformed manifest keys skipped: %s",
                nsid.hex(),
                len(malformed),
                ", ".join(key.hex() for key in malformed),
            )
        return generations

    def manifest(
        self, txn: Any, nsid: bytes, generation: int, namespace: str | None = None
    ) -> Manifest:
        """The manifest stored as ``generation`` (of ``namespace``, when given), verified.

        Raises:
            CheckpointNotFoundError: none is stored there.
            IntegrityError: it is damaged, or describes another generation or namespace.
        """
        return self.stored_manifest(txn, nsid, generation, namespace)[1]

    def stored_manifest(
        self, txn: Any, nsid: bytes, generation: int, namespace: str | None = None
    ) -> tuple[bytes, Manifest]:
        """:meth:`manifest`, with the record's bytes as stored (an export ships them)."""
        manifests = self._db("manifests")
        return records.stored_manifest(txn, manifests, self.codec, nsid, generation, namespace)

    def publish(self, txn: Any, nsid: bytes, manifest: Manifest) -> None:
        """Write ``manifest`` and make it the namespace's head.

        A quarantine record left under this number by a lost generation is
        dropped: it set that generation aside, not this one.
        """
        txn.put(
            records.manifest_key(nsid, manifest.generation),
            encode_manifest(self.codec, manifest),
            db=self._db("manifests"),
        )
        self.release(txn, manifest.namespace, manifest.generation)
        key = records.check_namespace(manifest.namespace)
        value = records.encode_head(manifest.generation, manifest.lineage)
        txn.put(key, self._sealed(txn, SEAL_HEAD, key, value), db=self._db("heads"))

    def expire(self, txn: Any, nsid: bytes, namespace: str, generation: int) -> None:
        """Delete a generation's manifest and its quarantine record."""
        txn.delete(records.manifest_key(nsid, generation), db=self._db("manifests"))
        self.release(txn, namespace, generation)

    def expire_all(self, txn: Any, nsid: bytes) -> None:
        """Delete every manifest under ``nsid``."""
        manifests = self._db("manifests")
        for key in [key for key, _ in records.prefixed(txn, manifests, nsid)]:
            txn.delete(key, db=manifests)

    # -- chunks -----------------------------------------------------------------

    def chunk(self, txn: Any, nsid: bytes, digest: bytes) -> memoryview | None:
        """A chunk's frame as stored (unverified), or None."""
        chunks = self._db("chunks")
        frame: memoryview | None = None if chunks is None else txn.get(nsid + digest, db=chunks)
        return frame

    def snapshot_chunk(self, txn: Any, nsid: bytes, digest: bytes) -> memoryview:
        """A chunk's frame, read in a long-lived snapshot transaction."""
        frame: memoryview = self.env.get(txn, nsid + digest, self._db("chunks"))
        return frame

    def checked_chunk(self, txn: Any, nsid: bytes, ref: ChunkRef) -> memoryview | None:
        """A chunk's frame, verified against its reference; None if it is absent.

        Raises:
            IntegrityError: digest, MAC or size disagree with the reference.
        """
        frame = self.chunk(txn, nsid, ref.digest)
        if frame is None:
            return None
        self.codec.verify(frame, digest=ref.digest)
        if len(frame) != ref.stored_bytes:
            msg = (
                f"Expected chunk {ref.digest.hex()} of {ref.stored_bytes} bytes as its "
                f"manifest says, got {len(frame)}"
            )
            raise IntegrityError(msg)
        return frame

    def put_chunk(self, txn: Any, nsid: bytes, digest: bytes, frame: bytes) -> bool:
        """Write a chunk unless it is present; True if it was written."""
        return bool(txn.put(nsid + digest, frame, db=self._db("chunks"), overwrite=False))

    def chunks(self, txn: Any, nsid: bytes) -> Iterator[tuple[bytes, memoryview]]:
        """(digest, frame) of every chunk stored under ``nsid``."""
        for key, frame in records.prefixed(txn, self._db("chunks"), nsid, values=True):
            yield key[len(nsid) :], frame

    def chunk_digests(self, txn: Any, nsid: bytes) -> Iterator[bytes]:
        """The digest of every chunk stored under ``nsid``."""
        for key, _ in records.prefixed(txn, self._db("chunks"), nsid):
            yield key[len(nsid) :]

    def delete_chunks(self, txn: Any, nsid: bytes, digests: set[bytes]) -> int:
        """Delete these chunks of a namespace; return how many were there."""
        chunks = self._db("chunks")
        return sum(bool(txn.delete(nsid + digest, db=chunks)) for digest in digests)

    def sweep(self, txn: Any, nsid: bytes, marked: set[bytes]) -> int:
        """Delete the namespace's chunks whose digest is not ``marked``; return how many."""
        chunks = self._db("chunks")
        doomed = [
            key for key, _ in records.prefixed(txn, chunks, nsid) if key[len(nsid) :] not in marked
        ]
        for key in doomed:
            txn.delete(key, db=chunks)
        return len(doomed)

    # -- quarantine ---------------------------------------------------------------

    def quarantined(self, txn: Any, namespace: str) -> dict[int, str]:
        """Quarantined generations and why; a malformed or forged record is skipped and logged.

        In a keyed store a quarantine record without a valid MAC is not
        obeyed: one forged by someone without the secret would make loads
        skip the head and return an older generation.
        """
        found, problems = self.quarantine_records(txn, namespace)
        for problem in problems:
            log.warning("namespace %r: %s", namespace, problem, extra={"namespace": namespace})
        return found

    def quarantine_records(self, txn: Any, namespace: str) -> tuple[dict[int, str], list[str]]:
        """(authentic quarantine records: generation -> reason, why others are ignored)."""
        stored, malformed = records.quarantine_entries(txn, self._db("meta"), namespace)
        problems = [f"malformed quarantine key {key!r} skipped" for key in malformed]
        found: dict[int, str] = {}
        for generation, (key, raw) in sorted(stored.items()):
            what = f"the quarantine record of generation {generation}"
            try:
                value = self._opened(txn, SEAL_QUARANTINE, key, raw, what)
            except IntegrityError as exc:
                problems.append(f"{exc}; loads ignore it")
                continue
            found[generation] = value.decode(errors="replace")
        return found, problems

    def quarantine(self, txn: Any, namespace: str, generation: int, reason: str) -> None:
        """Set a generation aside: loads skip it."""
        key = records.quarantine_key(namespace, generation)
        value = self._sealed(txn, SEAL_QUARANTINE, key, reason.encode())
        txn.put(key, value, db=self._db("meta"))

    def release(self, txn: Any, namespace: str, generation: int | None = None) -> int:
        """Drop quarantine records (one generation's, or all); return how many."""
        keys = self._quarantine_keys(txn, namespace)
        if generation is not None:
            keys = [k for k in keys if k == records.quarantine_key(namespace, generation)]
        for key in keys:
            txn.delete(key, db=self._db("meta"))
        return len(keys)

    def _quarantine_keys(self, txn: Any, namespace: str) -> list[bytes]:
        prefix = records.meta_prefix(b"quarantine", namespace)
        return [k for k, _ in records.prefixed(txn, self._db("meta"), prefix)]

    # -- format 2: sealing a keyed store written by 0.1 --------------------------------

    def seal_legacy(self, txn: Any) -> bool:
        """Upgrade a keyed store of format 1 to format 2: seal its heads and quarantine records.

        Inside one write transaction; True if the store is now of format 2.
        A head is sealed only if it names a stored generation whose manifest
        verifies with this store's secret (and has its lineage); others are
        left as they are (loads then report them). A store holding data but
        not one generation that verifies with the secret (an unkeyed store,
        or another secret) is left at format 1. Quarantine records are
        sealed as they are: trusted on this first use.

        Raises:
            StoreFormatError: the format record says 1 but a head is sealed
                with this secret already: the format record was reset (a
                downgrade to make unsealed records pass).
        """
        if self.sealing(txn) != "plain":
            return True  # another process upgraded it first
        heads = self._db("heads")
        sealed: list[tuple[bytes, bytes]] = []
        verified = False
        for key, namespace in list(self.head_keys(txn)):
            raw = bytes(txn.get(key, db=heads))
            with contextlib.suppress(IntegrityError):
                self.codec.unseal(SEAL_HEAD, key, raw)
                msg = (
                    f"Expected the records of a format-1 store in {self.where}, found the head "
                    f"of {records.shown(key)!r} sealed with this store's secret: the "
                    f"store-format record was reset; restore it to 2 or `warmstart drop` the "
                    f"namespaces"
                )
                raise StoreFormatError(msg)
            if namespace is None:
                continue
            if self._names_verified_generation(txn, namespace, raw):
                verified = True
                sealed.append((key, self.codec.seal(SEAL_HEAD, key, raw)))
        manifests = self._db("manifests")
        empty = not sealed and txn.stat(manifests)["entries"] == 0
        if not (verified or empty):
            log.warning(
                "store at %s: no generation verifies with this secret (an unkeyed store, or "
                "another secret); its records stay unsealed (format 1)",
                self.where,
            )
            return False
        for key, value in sealed:
            txn.put(key, value, db=heads)
        meta = self._db("meta")
        for key, value in list(records.prefixed(txn, meta, b"quarantine:", values=True)):
            txn.put(key, self.codec.seal(SEAL_QUARANTINE, key, bytes(value)), db=meta)
        txn.put(FORMAT_KEY, str(SEALED_FORMAT).encode(), db=meta)
        log.info("store at %s: heads and quarantine records sealed (format 2)", self.where)
        return True

    def _names_verified_generation(self, txn: Any, namespace: str, raw: bytes) -> bool:
        """Whether a plain head record names a stored generation that verifies with the secret."""
        try:
            generation, lineage = records.decode_head(raw, namespace, self.where)
            nsid = self.nsid(txn, namespace, create=False)
            if nsid is None:
                return False
            return self.manifest(txn, nsid, generation, namespace).lineage == lineage
        except (IntegrityError, CheckpointNotFoundError):
            return False

    # -- statistics ---------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """LMDB's own figures: disk use, the map, readers, and per table entries and bytes.

        ``map_size`` is address space reserved, not memory or disk use.
        """
        info = self.env.env.info()
        tables: dict[str, dict[str, int]] = {}
        page_size = 0
        with self.read() as txn:
            for name, db in self.env.dbs.items():
                if db is None:
                    tables[name] = {"entries": 0, "bytes": 0}
                    continue
                st = txn.stat(db)
                page_size = st["psize"]
                pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
                tables[name] = {"entries": st["entries"], "bytes": pages * st["psize"]}
        data = (Path(self.env.path) / "data.mdb").stat()
        return {
            # What data.mdb takes on disk (it may be sparse: its size is not its use).
            "disk_bytes": data.st_blocks * 512,
            "file_bytes": data.st_size,
            "map_size": info["map_size"],
            "page_size": page_size,
            "last_txnid": info["last_txnid"],
            "readers": info["num_readers"],
            "max_readers": info["max_readers"],
            "tables": tables,
        }
