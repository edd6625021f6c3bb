"""Export and import of generations between stores (warmstart.transfer)."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest
import xxhash

import warmstart
from conftest import RECORDS, Record, make_records
from warmstart import transfer
from warmstart.progress import Progress
from warmstart.transfer import (
    IMPORTED_FROM,
    ExportReport,
    ImportReport,
    _Header,
    export,
    import_archive,
)

SECTIONS = ("records",)


def save(store: warmstart.Store, data: Any, namespace: str = "svc", **kwargs: Any) -> int:
    return store.save(namespace, {"records": (RECORDS, data)}, **kwargs)


def loaded(store: warmstart.Store, namespace: str = "svc", generation: int | None = None) -> Any:
    with store.load(namespace, generation=generation) as snapshot:
        return snapshot.section("records", RECORDS)


def visible(store: warmstart.Store) -> dict[str, Any]:
    """Everything a reader can see: heads, manifests, and the loaded state of each generation."""
    out: dict[str, Any] = {}
    for namespace in store.namespaces():
        out[namespace] = [
            (
                g.generation,
                g.head,
                store.manifest(namespace, g.generation),
                loaded(store, namespace, g.generation),
            )
            for g in store.generations(namespace)
        ]
    return out


def changed(data: dict[str, Record], fraction: float, salt: int) -> None:
    step = max(1, int(1 / fraction))
    for i, key in enumerate(list(data)):
        if i % step == 0:
            data[key] = Record(i + salt, f"changed{salt}", -1.0, [salt], False, "z")


class TestRoundTrip:
    def test_full_round_trip_loads_equal(self, source, target, tracked, tmp_path):
        """A generation exported from one store and imported into another loads equal."""
        save(source, tracked, watermark={"lsn": 7}, tags={"release": "r1"})
        report = export(source, "svc", tmp_path / "a.wsa")
        result = import_archive(target, tmp_path / "a.wsa")
        assert isinstance(report, ExportReport)
        assert isinstance(result, ImportReport)
        assert (result.status, result.generation) == ("imported", 1)
        assert loaded(target) == dict(tracked)
        manifest = target.manifest("svc")
        original = source.manifest("svc")
        assert manifest.watermark == {"lsn": 7}
        assert manifest.created_at == original.created_at
        assert manifest.tags == {"release": "r1", IMPORTED_FROM: "svc@1"}
        assert target.verify().ok

    def test_delta_generation_round_trip(self, source, target, tracked, tmp_path):
        """A delta generation ships its base and delta chunks and replays the same."""
        save(source, tracked)
        changed(tracked, 0.01, salt=1)
        del tracked["k5"]
        assert source.manifest("svc").kind == "full"
        save(source, tracked)
        assert source.manifest("svc").kind == "delta"
        export(source, "svc", tmp_path / "a.wsa")
        import_archive(target, tmp_path / "a.wsa")
        assert loaded(target) == dict(tracked)
        assert list(loaded(target)) == list(loaded(source))

    def test_older_generation_and_other_namespace(self, source, target, tmp_path):
        """An older generation can be exported and imported under another namespace."""
        first = make_records(500)
        save(source, first)
        save(source, make_records(500, salt=3))
        export(source, "svc", tmp_path / "a.wsa", generation=1)
        result = import_archive(target, tmp_path / "a.wsa", namespace="copy/svc")
        assert (result.namespace, result.source_namespace) == ("copy/svc", "svc")
        assert target.namespaces() == ["copy/svc"]
        assert loaded(target, "copy/svc") == first

    def test_export_from_read_only_store(self, source, target, tmp_path):
        """A read-only source store can be exported."""
        save(source, make_records(100))
        source.close()
        with warmstart.Store(tmp_path / "source", readonly=True) as ro:
            export(ro, "svc", tmp_path / "a.wsa")
        import_archive(target, tmp_path / "a.wsa")
        assert loaded(target) == make_records(100)

    def test_empty_sections_round_trip(self, source, target, tmp_path):
        """A generation whose sections are empty exports an archive with no chunks."""
        source.save("svc", {"records": (RECORDS, {})})
        report = export(source, "svc", tmp_path / "a.wsa")
        import_archive(target, tmp_path / "a.wsa")
        assert report.chunks == 0
        assert loaded(target) == {}


class TestExportFile:
    def test_archive_is_private_and_replaces_atomically(self, source, tmp_path):
        """The archive is readable by its owner only and replaces an existing file whole."""
        save(source, make_records(100))
        out = tmp_path / "a.wsa"
        out.write_bytes(b"old contents")
        report = export(source, "svc", out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
        assert out.stat().st_size == report.archive_bytes
        assert out.read_bytes()[:4] == b"WSTA"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wsa", "source"]

    def test_damaged_source_leaves_no_file(self, source, tmp_path):
        """Exporting a damaged generation fails and leaves neither archive nor temporary file."""
        save(source, make_records(5000))
        ref = source.manifest("svc").sections[0].base[0]
        key = b"\x00\x00\x00\x01" + ref.digest
        source._env.write(
            lambda txn: txn.put(key, b"WSTF" + bytes(40), db=source._tables._db("chunks"))
        )
        with pytest.raises(warmstart.IntegrityError, match=ref.digest.hex()):
            export(source, "svc", tmp_path / "a.wsa")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]

    def test_missing_chunk_in_source(self, source, tmp_path):
        """A chunk missing from the source fails the export, naming it."""
        save(source, make_records(5000))
        ref = source.manifest("svc").sections[0].base[-1]
        key = b"\x00\x00\x00\x01" + ref.digest
        source._env.write(lambda txn: txn.delete(key, db=source._tables._db("chunks")))
        with pytest.raises(warmstart.IntegrityError, match=f"{ref.digest.hex()}.*missing"):
            export(source, "svc", tmp_path / "a.wsa")
        assert not (tmp_path / "a.wsa").exists()

    def test_unknown_namespace_and_generation(self, source, tmp_path):
        """Exporting what does not exist names what was expected and what was found."""
        save(source, make_records(10))
        with pytest.raises(warmstart.CheckpointNotFoundError, match="namespace 'nope'"):
            export(source, "nope", tmp_path / "a.wsa")
        with pytest.raises(warmstart.CheckpointNotFoundError, match=r"generation 9 .*\[1\]"):
            export(source, "svc", tmp_path / "a.wsa", generation=9)
        assert not (tmp_path / "a.wsa").exists()


class TestIncremental:
    def test_since_ships_only_changed_chunks(self, source, target, tracked, tmp_path):
        """An export since the previous generation ships about only the 1% that changed."""
        first = save(source, tracked)
        full = export(source, "svc", tmp_path / "full.wsa")
        import_archive(target, tmp_path / "full.wsa")
        changed(tracked, 0.01, salt=2)
        save(source, tracked)
        delta = source.manifest("svc").sections[0].deltas
        report = export(source, "svc", tmp_path / "inc.wsa", since=first)
        assert report.chunks == len(delta)
        assert report.omitted_chunks == len(source.manifest("svc").sections[0].base)
        assert report.archive_bytes < 0.1 * full.archive_bytes
        result = import_archive(target, tmp_path / "inc.wsa")
        assert (result.status, result.generation, result.chunks_written) == ("imported", 2, 1)
        assert loaded(target) == dict(tracked)

    def test_target_without_base_is_refused(self, source, target, tracked, tmp_path):
        """An incremental archive into a target lacking its base fails, naming missing chunks."""
        first = save(source, tracked)
        changed(tracked, 0.01, salt=2)
        save(source, tracked)
        export(source, "svc", tmp_path / "inc.wsa", since=first)
        save(target, make_records(10))
        before = visible(target)
        base = source.manifest("svc").sections[0].base[0].digest.hex()
        with pytest.raises(warmstart.CheckpointNotFoundError, match=base):
            import_archive(target, tmp_path / "inc.wsa")
        assert visible(target) == before

    def test_since_needs_same_lineage(self, source, tmp_path):
        """Since must name a retained generation of the same lineage."""
        save(source, make_records(10))
        save(source, make_records(10, salt=1))  # untracked and mode auto: a new full base
        with pytest.raises(warmstart.CheckpointNotFoundError, match="lineage"):
            export(source, "svc", tmp_path / "a.wsa", since=1)
        with pytest.raises(warmstart.CheckpointNotFoundError, match="generation 7"):
            export(source, "svc", tmp_path / "a.wsa", since=7)


class TestIdempotence:
    def test_import_twice_changes_nothing(self, source, target, tracked, tmp_path):
        """Importing the same archive twice is a no-op the second time."""
        save(source, tracked)
        export(source, "svc", tmp_path / "a.wsa")
        import_archive(target, tmp_path / "a.wsa")
        before = visible(target)
        again = import_archive(target, tmp_path / "a.wsa")
        assert (again.status, again.generation, again.chunks_written) == ("present", 1, 0)
        assert visible(target) == before

    def test_import_back_into_source_is_a_no_op(self, source, tracked, tmp_path):
        """Importing a store's own export into it finds the generation already there."""
        save(source, tracked)
        save(source, make_records(10))
        export(source, "svc", tmp_path / "a.wsa", generation=1)
        before = visible(source)
        result = import_archive(source, tmp_path / "a.wsa")
        assert (result.status, result.generation) == ("present", 1)
        assert visible(source) == before

    def test_concurrent_identical_import_wins_the_race(
        self, source, target, tracked, tmp_path, monkeypatch
    ):
        """An identical import committed while this one wrote chunks makes this one a no-op."""
        monkeypatch.setattr(transfer, "_BATCH_BYTES", 1)
        save(source, tracked)
        export(source, "svc", tmp_path / "a.wsa")
        inner: list[ImportReport] = []

        def race(p: Progress) -> None:
            if p.chunks_done == 1 and not inner:
                inner.append(import_archive(target, tmp_path / "a.wsa"))

        outer = import_archive(target, tmp_path / "a.wsa", progress=race)
        assert (inner[0].status, outer.status) == ("imported", "present")
        assert [g.generation for g in target.generations("svc")] == [1]
        assert loaded(target) == dict(tracked)

    def test_damaged_target_generation_is_not_taken_for_the_import(self, source, target, tmp_path):
        """A damaged manifest in the target is skipped when looking for an identical generation."""
        save(source, make_records(100))
        export(source, "svc", tmp_path / "a.wsa")
        save(target, make_records(100, salt=4))
        key = b"\x00\x00\x00\x01" + (1).to_bytes(8, "big")
        target._env.write(lambda txn: txn.put(key, bytes(40), db=target._tables._db("manifests")))
        result = import_archive(target, tmp_path / "a.wsa")
        assert (result.status, result.generation) == ("imported", 2)
        assert loaded(target) == make_records(100)


class TestNewerTarget:
    def test_import_becomes_head_plus_one(self, source, target, tmp_path):
        """Into a target with newer generations the import becomes head + 1, tagged."""
        wanted = make_records(300, salt=5)
        save(source, make_records(300))
        save(source, wanted)
        export(source, "svc", tmp_path / "a.wsa")
        for salt in range(3):
            save(target, make_records(50, salt=salt))
        result = import_archive(target, tmp_path / "a.wsa")
        assert (result.generation, result.source_generation, result.renumbered) == (4, 2, True)
        head = target.manifest("svc")
        assert (head.generation, head.parent, head.tags[IMPORTED_FROM]) == (4, 3, "svc@2")
        assert [g.generation for g in target.generations("svc")] == [4, 3, 2]
        assert loaded(target) == wanted
        again = import_archive(target, tmp_path / "a.wsa")
        assert (again.status, again.generation) == ("present", 4)

    def test_import_keeps_a_newer_source_number(self, source, target, tmp_path):
        """When the source generation is newer than the target's head, it keeps its number."""
        for salt in range(5):
            save(source, make_records(30, salt=salt))
        export(source, "svc", tmp_path / "a.wsa")
        save(target, make_records(30, salt=99))
        result = import_archive(target, tmp_path / "a.wsa")
        assert (result.generation, result.renumbered) == (5, False)
        assert [g.generation for g in target.generations("svc")] == [5, 1]

    def test_next_save_after_import_is_a_full_base(self, source, target, tmp_path):
        """A tracked mapping saved after an import moved the head writes a base, not a delta."""
        save(source, make_records(100, salt=7))
        export(source, "svc", tmp_path / "a.wsa")
        mine = warmstart.TrackedDict(make_records(100))
        save(target, mine)
        import_archive(target, tmp_path / "a.wsa")
        mine["extra"] = Record(1, "x", 0.0, [], True, "a")
        save(target, mine)
        assert target.manifest("svc").kind == "full"
        assert loaded(target) == dict(mine)


def _records(data: bytes) -> list[tuple[bytes, int, int]]:
    """(tag, start, end) of each record of an archive."""
    out, offset = [], 8
    while offset < len(data):
        tag = data[offset : offset + 1]
        length = int.from_bytes(data[offset + 1 : offset + 5], "big")
        out.append((tag, offset, offset + 21 + length))
        offset += 21 + length
    return out


class TestDamagedArchives:
    @pytest.fixture
    def small(self, source, target, tmp_path) -> tuple[Path, bytes, dict[str, Any]]:
        save(source, make_records(60))
        export(source, "svc", tmp_path / "a.wsa")
        save(target, make_records(5, salt=1))
        return tmp_path / "a.wsa", (tmp_path / "a.wsa").read_bytes(), visible(target)

    def test_every_truncation_is_rejected(self, small, target, tmp_path):
        """An archive cut at any byte is rejected and the target is unchanged."""
        _, data, before = small
        bad = tmp_path / "bad.wsa"
        chunks_before = target.verify().chunks
        for length in range(len(data)):
            bad.write_bytes(data[:length])
            with pytest.raises(warmstart.IntegrityError):
                import_archive(target, bad)
        assert visible(target) == before
        assert target.verify().chunks == chunks_before

    def test_every_byte_flip_is_rejected(self, small, target, tmp_path):
        """A bit flipped in any byte of the archive is detected and nothing is imported."""
        _, data, before = small
        bad = tmp_path / "bad.wsa"
        for offset in range(len(data)):
            flipped = bytearray(data)
            flipped[offset] ^= 1 << (offset % 8)
            bad.write_bytes(bytes(flipped))
            with pytest.raises(warmstart.IntegrityError):
                import_archive(target, bad)
        assert visible(target) == before

    def test_large_archive_flips_and_cuts(self, source, target, tracked, tmp_path):
        """Flips and cuts inside each record of a multi-chunk archive are all rejected."""
        save(source, tracked)
        export(source, "svc", tmp_path / "a.wsa")
        data = (tmp_path / "a.wsa").read_bytes()
        records = _records(data)
        assert [r[0] for r in records] == [b"H"] + [b"C"] * (len(records) - 2) + [b"E"]
        save(target, make_records(5))
        before = visible(target)
        bad = tmp_path / "bad.wsa"
        for _, start, end in records:
            for offset in (start, start + 3, start + 12, (start + end) // 2, end - 1):
                flipped = bytearray(data)
                flipped[offset] ^= 0x40
                bad.write_bytes(bytes(flipped))
                with pytest.raises(warmstart.IntegrityError, match=r"bad\.wsa"):
                    import_archive(target, bad)
            bad.write_bytes(data[: (start + end) // 2])
            with pytest.raises(warmstart.IntegrityError, match=r"truncated|ends"):
                import_archive(target, bad)
        assert visible(target) == before

    def test_trailing_bytes_and_foreign_files(self, small, target, tmp_path):
        """Extra bytes after the trailer, or a file that is no archive, are rejected."""
        _, data, before = small
        bad = tmp_path / "bad.wsa"
        for content in (data + b"\x00", b"", b"PK\x03\x04" + bytes(100), data[:8] + data):
            bad.write_bytes(content)
            with pytest.raises(warmstart.IntegrityError):
                import_archive(target, bad)
        assert visible(target) == before

    def test_huge_declared_length_is_refused_before_reading(self, small, target, tmp_path):
        """A record declaring an absurd length is refused without allocating it."""
        _, data, _ = small
        forged = bytearray(data)
        forged[9:13] = (0xFFFFFFFF).to_bytes(4, "big")
        (tmp_path / "bad.wsa").write_bytes(bytes(forged))
        with pytest.raises(warmstart.IntegrityError, match="declares 4294967295"):
            import_archive(target, tmp_path / "bad.wsa")


class TestKeyedStores:
    def test_same_secret_round_trip(self, tmp_path):
        """Archives move between stores that share a secret."""
        with warmstart.Store(tmp_path / "a", secret=b"s3cret", sync=False) as a:
            save(a, make_records(200))
            export(a, "svc", tmp_path / "a.wsa")
        with warmstart.Store(tmp_path / "b", secret=b"s3cret", sync=False) as b:
            import_archive(b, tmp_path / "a.wsa")
            assert loaded(b) == make_records(200)

    @pytest.mark.parametrize(
        ("writer", "reader"),
        [(b"other", b"s3cret"), (None, b"s3cret"), (b"s3cret", None)],
        ids=["foreign-key", "unkeyed-into-keyed", "keyed-into-unkeyed"],
    )
    def test_foreign_archives_are_rejected(self, tmp_path, writer, reader):
        """A keyed store rejects archives written under another key or none, and vice versa."""
        with warmstart.Store(tmp_path / "a", secret=writer, sync=False) as a:
            save(a, make_records(200, salt=1))
            export(a, "svc", tmp_path / "a.wsa")
        with warmstart.Store(tmp_path / "b", secret=reader, sync=False) as b:
            save(b, make_records(20))
            before = visible(b)
            with pytest.raises(warmstart.IntegrityError, match=r"secret|MAC"):
                import_archive(b, tmp_path / "a.wsa")
            assert visible(b) == before

    def test_forged_manifest_with_recomputed_digests_is_rejected(self, tmp_path):
        """Rewriting a keyed archive's chunk and every digest around it still fails the MAC."""
        with warmstart.Store(tmp_path / "a", secret=b"s3cret", sync=False) as a:
            save(a, make_records(200))
            export(a, "svc", tmp_path / "a.wsa")
        with warmstart.Store(tmp_path / "evil", sync=False) as evil:
            save(evil, {"k0": Record(666, "evil", 0.0, [], True, "x")})
            export(evil, "svc", tmp_path / "evil.wsa")
        # Graft the attacker's unkeyed manifest and chunk into the keyed archive's
        # header, and recompute every digest an xxh3-only check would look at.
        forged = _regraft(tmp_path / "a.wsa", tmp_path / "evil.wsa")
        (tmp_path / "forged.wsa").write_bytes(forged)
        with warmstart.Store(tmp_path / "b", secret=b"s3cret", sync=False) as b:
            with pytest.raises(warmstart.IntegrityError, match="MAC"):
                import_archive(b, tmp_path / "forged.wsa")
            assert b.namespaces() == []


def parse(data: bytes) -> tuple[_Header, list[bytes]]:
    """An archive's header and chunk frames."""
    records = _records(data)
    header = msgspec.msgpack.decode(data[records[0][1] + 21 : records[0][2]], type=_Header)
    return header, [data[s + 21 : e] for tag, s, e in records if tag == b"C"]


def build(records: list[tuple[bytes, bytes]], *, count: int | None = None) -> bytes:
    """An archive of these (tag, body) records with every digest recomputed, as a forger would."""
    out = bytearray(b"WSTA\x01\x00\x00\x00")
    for tag, body in records:
        out += tag + len(body).to_bytes(4, "big") + xxhash.xxh3_128_digest(body) + body
    chunks = sum(tag == b"C" for tag, _ in records) if count is None else count
    end = chunks.to_bytes(8, "big") + len(out).to_bytes(8, "big")
    end += xxhash.xxh3_128_digest(bytes(out))
    out += b"E" + len(end).to_bytes(4, "big") + xxhash.xxh3_128_digest(end) + end
    return bytes(out)


def forge(header: _Header, chunks: list[bytes]) -> bytes:
    return build([(b"H", msgspec.msgpack.encode(header)), *((b"C", c) for c in chunks)])


def _regraft(keyed: Path, evil: Path) -> bytes:
    keyed_header, _ = parse(keyed.read_bytes())
    evil_header, evil_chunks = parse(evil.read_bytes())
    return forge(msgspec.structs.replace(evil_header, keyed=keyed_header.keyed), evil_chunks)


class TestForgedArchives:
    """Archives whose digests all check out but whose contents lie."""

    @pytest.fixture
    def genuine(self, source, target, tmp_path) -> tuple[_Header, list[bytes]]:
        save(source, make_records(5000))
        export(source, "svc", tmp_path / "a.wsa")
        save(target, make_records(5, salt=1))
        return parse((tmp_path / "a.wsa").read_bytes())

    def rejected(self, target, tmp_path, data: bytes, match: str) -> None:
        before = visible(target)
        (tmp_path / "forged.wsa").write_bytes(data)
        with pytest.raises(warmstart.IntegrityError, match=match):
            import_archive(target, tmp_path / "forged.wsa")
        assert visible(target) == before

    def test_genuine_rebuild_imports(self, genuine, target, tmp_path):
        """The forging helper itself produces an archive import accepts."""
        header, chunks = genuine
        (tmp_path / "same.wsa").write_bytes(forge(header, chunks))
        assert import_archive(target, tmp_path / "same.wsa").status == "imported"

    def test_header_that_lies_about_its_manifest(self, genuine, target, tmp_path):
        """A header naming another namespace or generation than its manifest is refused."""
        header, chunks = genuine
        for lie in ({"namespace": "other"}, {"generation": 9}, {"lineage": "00"}):
            forged = forge(msgspec.structs.replace(header, **lie), chunks)
            self.rejected(target, tmp_path, forged, "describe its manifest")

    def test_chunk_sets_must_match_the_manifest(self, genuine, target, tmp_path):
        """Extra, missing or repeated chunks are refused."""
        header, chunks = genuine
        stranger = warmstart.codec.Codec().encode(b"not part of this generation" * 10)
        extra = forge(msgspec.structs.replace(header, chunks=len(chunks) + 1), [*chunks, stranger])
        self.rejected(target, tmp_path, extra, "only chunks the manifest references")
        short = forge(msgspec.structs.replace(header, chunks=len(chunks) - 1), chunks[1:])
        self.rejected(target, tmp_path, short, "are missing")
        twice = forge(msgspec.structs.replace(header, chunks=len(chunks) + 1), [*chunks, chunks[0]])
        self.rejected(target, tmp_path, twice, "chunk not seen before")
        miscounted = forge(msgspec.structs.replace(header, chunks=len(chunks) + 1), chunks)
        self.rejected(target, tmp_path, miscounted, "as the header says")

    def test_structure(self, genuine, target, tmp_path):
        """Records out of order, a malformed header, a bad trailer or no header are refused."""
        header, chunks = genuine
        body = msgspec.msgpack.encode(header)
        cases = {
            "the header": build([(b"C", chunks[0]), (b"H", body)]),
            "malformed": build([(b"H", b"\x93not a map")]),
            "header record": build([]),
            "got a b'X' record": build([(b"H", body), (b"X", b"")]),
        }
        for match, data in cases.items():
            self.rejected(target, tmp_path, data, match)
        good = forge(header, chunks)
        cut = good[: -(21 + 32)]
        end = b"\x00" * 8
        self.rejected(
            target,
            tmp_path,
            cut + b"E" + len(end).to_bytes(4, "big") + xxhash.xxh3_128_digest(end) + end,
            "trailer of 32 bytes",
        )

    def test_archive_changed_during_import(self, genuine, target, tmp_path, monkeypatch):
        """An archive truncated under a running import fails cleanly; the head is unchanged."""
        monkeypatch.setattr(transfer, "_BATCH_BYTES", 1)
        path = tmp_path / "a.wsa"
        assert len(genuine[1]) > 1
        before = visible(target)

        def truncate(p: Progress) -> None:
            if p.chunks_done == 1:
                with path.open("r+b") as f:
                    f.truncate(100)

        with pytest.raises(warmstart.IntegrityError, match="the file changed"):
            import_archive(target, path, progress=truncate)
        assert visible(target) == before


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import warmstart
    from warmstart import transfer

    target, archive, kill_at, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    transfer._BATCH_BYTES = batch

    def progress(p):
        print(p.chunks_done, flush=True)
        if p.chunks_done >= kill_at > 0:
            os.kill(os.getpid(), signal.SIGKILL)

    with warmstart.Store(target) as store:
        transfer.import_archive(store, archive, progress=progress)
    print("done", flush=True)
    """
)


class TestInterruptedImport:
    @pytest.fixture
    def archive(self, source, tmp_path) -> tuple[Path, dict[str, Record], int]:
        data = make_records(60_000)
        save(source, data)
        report = export(source, "svc", tmp_path / "a.wsa")
        assert report.chunks >= 8
        return tmp_path / "a.wsa", data, report.chunks

    def run_child(self, tmp_path: Path, archive: Path, kill_at: int, batch: int = 1) -> int:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                CHILD,
                str(tmp_path / "target"),
                str(archive),
                str(kill_at),
                str(batch),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return proc.returncode

    @pytest.mark.parametrize("where", ["first", "middle", "last"])
    def test_sigkill_then_rerun_completes(self, tmp_path, archive, where):
        """An import killed by SIGKILL after some batches commits nothing; a rerun finishes."""
        path, data, chunks = archive
        kill_at = {"first": 1, "middle": chunks // 2, "last": chunks}[where]
        assert self.run_child(tmp_path, path, kill_at) == -signal.SIGKILL
        with warmstart.Store(tmp_path / "target", sync=False) as target:
            assert target.namespaces() == []
            result = import_archive(target, path)
            assert (result.status, result.chunks_skipped) == ("imported", kill_at)
            assert result.chunks_written == chunks - kill_at
            assert loaded(target) == data
            assert target.verify().ok

    def test_sigkill_at_random_moments(self, tmp_path, archive):
        """Kills from outside at varying moments always leave a rerunnable import."""
        path, data, _ = archive
        codes = []
        for delay_lines in (1, 3, 6):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(tmp_path / "target"),
                    str(path),
                    "0",
                    str(64 * 1024),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            for _ in range(delay_lines):
                proc.stdout.readline()
            proc.send_signal(signal.SIGKILL)
            codes.append(proc.wait(timeout=60))
            proc.stdout.close()
        assert -signal.SIGKILL in codes
        with warmstart.Store(tmp_path / "target", sync=False) as target:
            import_archive(target, path)
            assert loaded(target) == data
            assert import_archive(target, path).status == "present"

    def test_chunks_swept_before_commit_are_written_again(
        self, source, target, tmp_path, monkeypatch
    ):
        """Chunks swept by a concurrent collection before the commit are written again."""
        monkeypatch.setattr(transfer, "_BATCH_BYTES", 1)
        data = make_records(20_000)
        save(source, data)
        export(source, "svc", tmp_path / "a.wsa")
        save(target, make_records(5))
        swept = []

        def progress(p: Progress) -> None:
            if p.chunks_done == p.chunks_total and p.bytes_done and not swept:
                swept.append(target.gc())

        result = import_archive(target, tmp_path / "a.wsa", progress=progress)
        assert swept[0] == result.chunks_written > 1
        assert result.chunks_skipped == 0
        assert loaded(target) == data
        assert target.verify().ok

    def test_endless_sweeping_gives_up_clearly(self, source, target, tmp_path, monkeypatch):
        """An import whose chunks are swept at every attempt fails with a StoreError."""
        monkeypatch.setattr(transfer, "_BATCH_BYTES", 1)
        save(source, make_records(20_000))
        export(source, "svc", tmp_path / "a.wsa")
        save(target, make_records(5))
        before = visible(target)

        def progress(p: Progress) -> None:
            if p.chunks_done == p.chunks_total:
                target.gc()

        with pytest.raises(warmstart.StoreError, match="collected 3 times"):
            import_archive(target, tmp_path / "a.wsa", progress=progress)
        assert visible(target) == before


class TestProgress:
    def test_progress_reports_bytes_chunks_rate_and_eta(self, source, target, tracked, tmp_path):
        """Progress is reported per chunk, monotonic, and ends at the totals with an ETA of zero."""
        save(source, tracked)
        seen: list[Progress] = []
        report = export(source, "svc", tmp_path / "a.wsa", progress=seen.append)
        import_archive(target, tmp_path / "a.wsa", progress=seen.append)
        for operation in ("export", "import"):
            reports = [p for p in seen if p.operation == operation]
            assert len(reports) == report.chunks + 1
            done = [p.bytes_done for p in reports]
            assert done == sorted(done)
            last = reports[-1]
            assert (last.bytes_done, last.chunks_done) == (report.chunk_bytes, report.chunks)
            assert (last.bytes_total, last.chunks_total) == (report.chunk_bytes, report.chunks)
            assert (last.eta, last.fraction) == (0.0, 1.0)
            assert last.rate > 0
            assert (reports[0].bytes_done, reports[0].eta) == (0, None)
        with pytest.raises(AttributeError):
            seen[0].bytes_done = 1  # type: ignore[misc]

    def test_resumed_import_counts_present_chunks_as_done(self, source, target, tracked, tmp_path):
        """A no-op import reports everything done at once."""
        save(source, tracked)
        export(source, "svc", tmp_path / "a.wsa")
        import_archive(target, tmp_path / "a.wsa")
        seen: list[Progress] = []
        import_archive(target, tmp_path / "a.wsa", progress=seen.append)
        assert len(seen) == 1
        assert (seen[0].fraction, seen[0].rate) == (1.0, 0.0)


class TestReadOnlyTarget:
    def test_import_into_read_only_store_is_refused(self, source, tmp_path):
        """Importing into a store opened read-only raises ReadOnlyStoreError."""
        save(source, make_records(10))
        export(source, "svc", tmp_path / "a.wsa")
        with warmstart.Store(tmp_path / "t", sync=False) as t:
            save(t, make_records(1))
        with (
            warmstart.Store(tmp_path / "t", readonly=True) as ro,
            pytest.raises(warmstart.errors.ReadOnlyStoreError),
        ):
            import_archive(ro, tmp_path / "a.wsa")


def test_module_dir_lists_public_names():
    """The module's dir() is its public API."""
    assert dir(transfer) == list(transfer.__all__)
