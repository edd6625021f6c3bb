"""Verifying a store: every chunk, every manifest, and every record a load relies on.

Private to the store wing; ``Store.verify`` runs it. It reads one consistent
read transaction and reports, per namespace: damaged or forged records (head,
namespace id, manifest keys, quarantine records), manifests that cannot be
read, chunks that are missing or fail their digest or MAC (naming every
generation that uses them), a head that a load would skip or cannot take at
its word, and chunks no generation references.
"""

from __future__ import annotations

from typing import Any

import msgspec

from warmstart.errors import CheckpointNotFoundError, IntegrityError
from warmstart.store._records import NSID, namespace_name, shown
from warmstart.store._tables import Tables

__all__ = ("Problem", "VerifyReport", "verify")


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One thing :meth:`Store.verify` found wrong."""

    namespace: str
    generation: int | None
    what: str
    chunk: str | None = None


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of :meth:`Store.verify`.

    Attributes:
        orphans: chunks no retained generation references (``gc`` frees them).
        unaccounted: chunks no readable manifest references, in a namespace
            where some manifest cannot be read: they may be that
            generation's, so they are not counted as orphans (and ``gc``
            keeps them).
    """

    problems: tuple[Problem, ...] = ()
    namespaces: int = 0
    generations: int = 0
    chunks: int = 0
    orphans: int = 0
    unaccounted: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems


class _Verification(msgspec.Struct):
    """What :meth:`Store.verify` counts as it goes (frozen into a VerifyReport)."""

    problems: list[Problem] = msgspec.field(default_factory=list)
    namespaces: int = 0
    generations: int = 0
    chunks: int = 0
    orphans: int = 0
    unaccounted: int = 0


def verify(tables: Tables) -> VerifyReport:
    """Check a store (see :meth:`Store.verify`)."""
    return _Verifier(tables).run()


class _Verifier:
    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def run(self) -> VerifyReport:
        """Verify every namespace; see :meth:`Store.verify`."""
        report = _Verification()
        with self.tables.read() as txn:
            seen: set[str] = set()
            for raw, namespace in list(self.tables.head_keys(txn)):
                if namespace is None:
                    what = f"head key {raw!r} names no namespace: it is damaged"
                    report.problems.append(
                        Problem(namespace=shown(raw), generation=None, what=what)
                    )
                    continue
                seen.add(namespace)
                report.namespaces += 1
                self._verify_namespace(txn, namespace, report)
            # A namespace whose head record is gone still has its generations:
            # loads use them, so they are checked (and the loss reported) too.
            for namespace in self._headless(txn, seen):
                report.namespaces += 1
                self._verify_namespace(txn, namespace, report)
        return VerifyReport(
            problems=tuple(report.problems),
            namespaces=report.namespaces,
            generations=report.generations,
            chunks=report.chunks,
            orphans=report.orphans,
            unaccounted=report.unaccounted,
        )

    def _headless(self, txn: Any, seen: set[str]) -> list[str]:
        """Namespaces with stored generations but no head record."""
        found = []
        for raw, number in self.tables.namespace_ids(txn):
            name = namespace_name(raw)
            if name is None or name in seen or number is None:
                continue
            if self.tables.manifest_keys(txn, NSID.pack(number))[0]:
                found.append(name)
        return found

    def _verify_records(
        self, txn: Any, namespace: str, report: _Verification
    ) -> tuple[bytes, list[int]] | None:
        """Check the id, head and manifest keys; (id, generations) if the id is usable."""
        tables = self.tables
        try:
            nsid = tables.nsid(txn, namespace, create=False)
        except IntegrityError as exc:
            report.problems.append(
                Problem(namespace=namespace, generation=None, what=f"namespace id: {exc}")
            )
            return None
        if nsid is None:
            report.problems.append(
                Problem(namespace=namespace, generation=None, what="namespace has a head but no id")
            )
            return None
        generations, malformed = tables.manifest_keys(txn, nsid)
        report.problems.extend(
            Problem(
                namespace=namespace, generation=None, what=f"manifest key {key.hex()} is malformed"
            )
            for key in malformed
        )
        report.problems.extend(
            Problem(namespace=namespace, generation=generation, what=what)
            for generation, what in self._head_findings(txn, namespace, generations)
        )
        return nsid, generations

    def _head_findings(
        self, txn: Any, namespace: str, generations: list[int]
    ) -> list[tuple[int | None, str]]:
        """(generation, what) for each thing that makes the head untrustworthy or skipped."""
        tables = self.tables
        quarantined, problems = tables.quarantine_records(txn, namespace)
        findings: list[tuple[int | None, str]] = [(None, p) for p in problems]
        newest = generations[0] if generations else None
        try:
            head = tables.head(txn, namespace)
        except IntegrityError as exc:
            return [*findings, (None, f"head: {exc}")]
        if head is None:
            if newest is not None:
                what = (
                    f"no head record beside generations up to {newest}: it was deleted, or "
                    f"the namespace's newest generations are lost"
                )
                findings.append((None, what))
            return findings
        if head[0] != newest:
            what = f"head names generation {head[0]}, the newest stored is {newest}"
            findings.append((head[0], what))
        elif head[0] in quarantined:
            what = (
                f"head generation {head[0]} is quarantined ({quarantined[head[0]]}): loads skip it"
            )
            findings.append((head[0], what))
        return findings

    def _verify_namespace(self, txn: Any, namespace: str, report: _Verification) -> None:
        found = self._verify_records(txn, namespace, report)
        if found is None:
            return
        nsid, generations = found
        referenced: dict[bytes, list[int | None]] = {}  # digest -> generations using it
        unreadable = False  # a manifest that cannot say which chunks are its own
        for generation in generations:
            report.generations += 1
            try:
                manifest = self.tables.manifest(txn, nsid, generation, namespace)
            except (IntegrityError, CheckpointNotFoundError) as exc:
                report.problems.append(
                    Problem(namespace=namespace, generation=generation, what=f"manifest: {exc}")
                )
                unreadable = True
                continue
            for ref_digest in manifest.digests():
                referenced.setdefault(ref_digest, []).append(generation)
                if self.tables.chunk(txn, nsid, ref_digest) is None:
                    report.problems.append(
                        Problem(
                            namespace=namespace,
                            generation=generation,
                            what="referenced chunk is missing",
                            chunk=ref_digest.hex(),
                        )
                    )
        self._verify_frames(txn, namespace, nsid, referenced, report, unreadable=unreadable)

    def _verify_frames(
        self,
        txn: Any,
        namespace: str,
        nsid: bytes,
        referenced: dict[bytes, list[int | None]],
        report: _Verification,
        *,
        unreadable: bool,
    ) -> None:
        """Check every stored chunk of a namespace; count orphans (or unaccounted chunks)."""
        for chunk_digest, frame in self.tables.chunks(txn, nsid):
            report.chunks += 1
            try:
                self.tables.codec.verify(frame, digest=chunk_digest)
            except IntegrityError as exc:
                # Name each generation the damage breaks (None for an orphan chunk).
                for user in referenced.get(chunk_digest) or [None]:
                    report.problems.append(
                        Problem(
                            namespace=namespace,
                            generation=user,
                            what=f"chunk: {exc}",
                            chunk=chunk_digest.hex(),
                        )
                    )
            if chunk_digest not in referenced:
                if unreadable:
                    report.unaccounted += 1
                else:
                    report.orphans += 1
