"""Foreign exceptions and unclear errors at the API's edges (issue 17).

Each test is one case from the issue that escaped as a builtin exception, an
unclear message or a surprising side effect before its fix: now a
``WarmstartError`` saying what was expected and what was found, and nothing
changed that should not have.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

import forge
import warmstart
from conftest import RECORDS, make_records, tables_of
from warmstart import cli
from warmstart.codec import MAX_PAYLOAD, Codec
from warmstart.errors import StoreError
from warmstart.manifest import decode_manifest
from warmstart.remote import pull, push
from warmstart.remote._layout import namespace_dir
from warmstart.transfer import export, import_archive

WARMSTART = str(Path(sys.executable).parent / "warmstart")


class Blob(msgspec.Struct):
    data: Any


BLOBS = warmstart.Contract("blob", Blob, key=str)


def open_store(path: Path, **kwargs: Any) -> warmstart.Store:
    kwargs.setdefault("sync", False)
    return warmstart.Store(path, **kwargs)


def store_with(path: Path, n: int = 10, namespace: str = "svc") -> Path:
    with open_store(path) as store:
        store.save(namespace, {"records": (RECORDS, make_records(n))})
    return path


# -- Store.save -----------------------------------------------------------------


class TestSaveErrors:
    def test_self_referencing_value_is_an_encode_error(self, tmp_path: Path) -> None:
        """A value that contains itself is EncodeError, not RecursionError (full and delta)."""
        loop: list[Any] = []
        loop.append(loop)
        with open_store(tmp_path / "s") as store:
            with pytest.raises(warmstart.EncodeError, match="refers to itself"):
                store.save("svc", {"b": (BLOBS, {"k": Blob(loop)})})
            store.save("svc", {"b": (BLOBS, {"k": Blob([])})}, mode="delta")
            with pytest.raises(warmstart.EncodeError, match="refers to itself"):
                store.save("svc", {"b": (BLOBS, {"k": Blob(loop)})}, mode="delta")
            looped_mark: dict[str, Any] = {}
            looped_mark["self"] = looped_mark
            with pytest.raises(warmstart.EncodeError):
                store.save("svc", {"b": (BLOBS, {})}, watermark=looped_mark)
            assert [g.generation for g in store.generations("svc")] == [1]

    @pytest.mark.parametrize("where", ["value", "watermark", "tags"])
    def test_over_64_mib_is_an_encode_error(self, tmp_path: Path, where: str) -> None:
        """A value, watermark or tags over the frame cap is EncodeError (was ValueError)."""
        big = "x" * (MAX_PAYLOAD + 1)
        kwargs: dict[str, Any] = {
            "value": {},
            "watermark": {"watermark": big},
            "tags": {"tags": {"big": big}},
        }[where]
        value = {"k": Blob(big)} if where == "value" else {"k": Blob(1)}
        with open_store(tmp_path / "s") as store:
            with pytest.raises(warmstart.EncodeError, match="at most 67108864 bytes"):
                store.save("svc", {"b": (BLOBS, value)}, **kwargs)
            assert store.namespaces() == []


# -- import_archive and export -------------------------------------------------------


class TestArchiveErrors:
    @pytest.fixture
    def good(self, tmp_path: Path) -> bytes:
        with open_store(store_with(tmp_path / "source")) as source:
            export(source, "svc", tmp_path / "good.wsa")
        return (tmp_path / "good.wsa").read_bytes()

    @pytest.mark.parametrize(
        "namespace", ["", "a\x00b", "n" * 256, "é" * 128], ids=["empty", "nul", "long", "long-utf8"]
    )
    def test_manifest_naming_an_invalid_namespace_is_integrity_error(
        self, tmp_path: Path, good: bytes, namespace: str
    ) -> None:
        """An archive whose digests all check out but whose namespace no store can hold."""
        header = forge.header_of(good)
        manifest = decode_manifest(Codec(), header["manifest"])
        manifest = msgspec.structs.replace(manifest, namespace=namespace)
        forged = forge.archive(manifest, forge.chunks_of(good))
        (tmp_path / "bad.wsa").write_bytes(forged)
        with open_store(tmp_path / "target") as target:
            with pytest.raises(warmstart.IntegrityError, match="valid namespace"):
                import_archive(target, tmp_path / "bad.wsa")
            assert target.namespaces() == []

    def test_missing_archive_file(self, tmp_path: Path) -> None:
        with (
            open_store(tmp_path / "target") as target,
            pytest.raises(warmstart.CheckpointNotFoundError, match="found none"),
        ):
            import_archive(target, tmp_path / "nope.wsa")

    def test_directory_instead_of_archive(self, tmp_path: Path) -> None:
        with (
            open_store(tmp_path / "target") as target,
            pytest.raises(StoreError, match="it is a directory"),
        ):
            import_archive(target, tmp_path)

    def test_export_into_a_missing_directory(self, tmp_path: Path) -> None:
        """The error names the directory, not a temporary file, and leaves nothing behind."""
        out = tmp_path / "no" / "such" / "dir" / "a.wsa"
        with (
            open_store(store_with(tmp_path / "source")) as source,
            pytest.raises(StoreError, match=r"no/such/dir'? is not one") as info,
        ):
            export(source, "svc", out)
        assert ".tmp" not in str(info.value)
        assert not (tmp_path / "no").exists()

    def test_import_from_a_pipe(self, tmp_path: Path, good: bytes) -> None:
        """`warmstart import STORE /dev/stdin` (and `-`) reads a good archive from a pipe."""
        for i, name in enumerate(("/dev/stdin", "-")):
            target = tmp_path / f"target{i}"
            proc = subprocess.run(
                [WARMSTART, "import", str(target), name],
                input=good,
                capture_output=True,
                timeout=60,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr
            with open_store(target) as store, store.load("svc") as snapshot:
                assert snapshot.section("records", RECORDS) == make_records(10)

    def test_truncated_archive_from_a_pipe(self, tmp_path: Path, good: bytes) -> None:
        """A pipe that ends early is a clear truncation error, with a sane byte count."""
        proc = subprocess.run(
            [WARMSTART, "import", str(tmp_path / "target"), "-"],
            input=good[: len(good) // 2],
            capture_output=True,
            text=False,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2
        assert b"truncated" in proc.stderr
        assert b"-" not in proc.stderr.split(b"bytes")[0].split(b"most")[-1]
        assert not (tmp_path / "target").exists()

    def test_import_of_a_non_archive_creates_no_store(self, tmp_path: Path) -> None:
        (tmp_path / "junk").write_bytes(b"definitely not an archive" * 10)
        assert cli.main(["import", str(tmp_path / "target"), str(tmp_path / "junk")]) == 2
        assert not (tmp_path / "target").exists()

    def test_import_of_a_keyed_archive_without_secret_creates_no_store(
        self, tmp_path: Path
    ) -> None:
        with open_store(tmp_path / "source", secret=b"k") as source:
            source.save("svc", {"records": (RECORDS, make_records(3))})
            export(source, "svc", tmp_path / "a.wsa")
        assert cli.main(["import", str(tmp_path / "target"), str(tmp_path / "a.wsa")]) == 2
        assert not (tmp_path / "target").exists()


# -- the command line -------------------------------------------------------------------


class TestCommandLine:
    def test_json_errors_are_json(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """With --json, an error is a JSON document on stdout too."""
        store_with(tmp_path / "s")
        assert cli.main(["inspect", str(tmp_path / "s"), "nope", "--json"]) == 2
        out, err = capsys.readouterr()
        data = json.loads(out)
        assert data["ok"] is False
        assert data["exit"] == 2
        assert data["error"]["type"] == "CheckpointNotFoundError"
        assert "'nope'" in data["error"]["message"]
        assert "error:" in err

    def test_missing_namespace_lists_those_present(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = store_with(tmp_path / "s")
        with open_store(path) as store:
            store.save("other", {"records": (RECORDS, {})})
            for call in (
                lambda: store.load("nope"),
                lambda: store.manifest("nope"),
                lambda: export(store, "nope", tmp_path / "x.wsa"),
            ):
                with pytest.raises(warmstart.CheckpointNotFoundError, match="holds 'other', 'svc'"):
                    call()
        assert cli.main(["drop", str(path), "nope", "--yes"]) == 2
        assert "holds 'other', 'svc'" in capsys.readouterr().err

    def test_ls_accepts_the_data_file(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`warmstart ls store/data.mdb` lists the store (tab completion lands there)."""
        path = store_with(tmp_path / "s")
        assert cli.main(["ls", str(path / "data.mdb")]) == 0
        assert "svc" in capsys.readouterr().out
        with pytest.raises(StoreError, match="got its file"):
            warmstart.Store(path / "data.mdb")

    def test_stats_shows_disk_use_not_the_map(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = store_with(tmp_path / "s")
        assert cli.main(["stats", str(path)]) == 0
        out = capsys.readouterr().out
        disk = next(line for line in out.splitlines() if line.startswith("disk"))
        assert "TB" not in disk
        assert "address space reserved, not memory or disk" in out
        assert cli.main(["stats", str(path), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["disk_bytes"] == (path / "data.mdb").stat().st_blocks * 512
        assert data["disk_bytes"] < data["map_size"]


# -- verify ----------------------------------------------------------------------


def test_verify_does_not_count_chunks_of_an_unreadable_manifest_as_orphans(
    tmp_path: Path,
) -> None:
    """A damaged manifest's chunks are 'unaccounted', not 'orphaned' (gc keeps them)."""
    path = tmp_path / "s"
    with open_store(path) as store:
        store.save("svc", {"records": (RECORDS, make_records(10))})
        store.save("svc", {"records": (RECORDS, make_records(10, salt=1))})
        assert store.verify().orphans == 0
    env = lmdb.open(str(path), max_dbs=4)
    with env.begin(write=True) as txn:
        db = env.open_db(b"manifests", txn=txn)
        key = next(k for k in txn.cursor(db=db).iternext(values=False) if k.endswith(b"\x01"))
        txn.put(key, b"garbage", db=db)
    env.close()
    with open_store(path) as store:
        report = store.verify()
    assert not report.ok
    assert report.orphans == 0
    assert report.unaccounted == 1


# -- compatibility ----------------------------------------------------------------


class Item(msgspec.Struct):
    name: str


class ItemChanged(msgspec.Struct):
    name: str
    size: int


def test_compatibility_takes_contracts() -> None:
    """The natural call, compatibility(old_contract, new_contract), works."""
    old = warmstart.Contract("item", Item)
    new = warmstart.Contract("item", ItemChanged, version=2, upgraders={1: dict})
    result = warmstart.compatibility(old, new)
    assert result.backward  # the upgrader chain reads v1 data
    assert result.forward  # v1 readers ignore "size"
    bare = warmstart.Contract("item", ItemChanged, version=2)
    assert warmstart.compatibility(old, bare).reasons[0] == "backward: no upgrader v1->v2"


def test_same_version_different_schema_says_bump_the_version() -> None:
    """Not "required by v1 but not written by v1": the fix is named, in both places."""
    old = warmstart.Contract("item", Item)
    new = warmstart.Contract("item", ItemChanged)
    result = warmstart.compatibility(old, new)
    assert result.reasons == (
        "backward: field 'size' is required by the reader but not written by the writer",
        "backward: same version, different schema: bump the version and add an upgrader",
    )
    with pytest.raises(warmstart.IncompatibleVersionError, match="bump the version") as info:
        new.plan(old.write_schema)
    assert "v1 but not written by v1" not in str(info.value)


# -- long namespaces ---------------------------------------------------------------


LONG = ["é" * 127, "x" * 255, "a/" + "ü" * 100 + "/b"]


@pytest.mark.parametrize("namespace", LONG, ids=["utf8-254", "ascii-255", "parts"])
def test_long_namespaces_fit_every_tier(tmp_path: Path, namespace: str) -> None:
    """A valid namespace pushes to and pulls from a file:// remote (was ENAMETOOLONG)."""
    assert len(namespace.encode()) <= 255
    remote = (tmp_path / "remote").as_uri()
    with open_store(tmp_path / "a") as a:
        a.save(namespace, {"records": (RECORDS, make_records(5))})
        assert push(a, remote, namespace).status == "pushed"
    with open_store(tmp_path / "b") as b:
        assert pull(b, remote, namespace).status == "pulled"
        with b.load(namespace) as snapshot:
            assert snapshot.section("records", RECORDS) == make_records(5)
    assert [h.namespace for h in warmstart.remote.list_remote(remote)] == [namespace]


def test_long_namespaces_keep_markers(tmp_path: Path) -> None:
    """The boot's markers hold for a 255-byte namespace (the file name was its hex: 510)."""
    namespace = "m" * 255
    with open_store(tmp_path / "s") as store:
        store.set_marker(namespace, "restoring-1-ab", b"x")
        store.set_marker("m" * 254, "restoring-1-ab", b"y")
        assert store.markers(namespace) == {"restoring-1-ab": b"x"}
        assert store.markers("m" * 254) == {"restoring-1-ab": b"y"}
        store.set_marker(namespace, "restoring-1-ab", None)
        assert store.markers(namespace) == {}


# -- foreign generation numbers -------------------------------------------------------


def test_huge_foreign_generation_does_not_wedge_the_namespace(tmp_path: Path) -> None:
    """An archive numbered 2**64-1 is renumbered; saves, imports and pulls go on."""
    with open_store(store_with(tmp_path / "source")) as source:
        export(source, "svc", tmp_path / "a.wsa")
    good = (tmp_path / "a.wsa").read_bytes()
    manifest = decode_manifest(Codec(), forge.header_of(good)["manifest"])
    huge = msgspec.structs.replace(manifest, generation=(1 << 64) - 1)
    (tmp_path / "huge.wsa").write_bytes(forge.archive(huge, forge.chunks_of(good)))
    with open_store(tmp_path / "target") as target:
        target.save("svc", {"records": (RECORDS, make_records(3))})
        report = import_archive(target, tmp_path / "huge.wsa")
        assert report.renumbered
        assert report.generation == 2
        assert target.save("svc", {"records": (RECORDS, make_records(4))}) == 3
        with open_store(tmp_path / "source") as source:
            source.save("svc", {"records": (RECORDS, make_records(7))})
            export(source, "svc", tmp_path / "b.wsa")
        assert import_archive(target, tmp_path / "b.wsa").generation == 4
        remote = (tmp_path / "remote").as_uri()
        push(target, remote, "svc")
        target.save("svc", {"records": (RECORDS, make_records(6))})
    with open_store(tmp_path / "puller") as puller:
        puller.save("svc", {"records": (RECORDS, make_records(1))})
        assert pull(puller, remote, "svc").generation == 2


def test_remote_head_at_the_top_of_the_range_is_refused(tmp_path: Path) -> None:
    """A remote head numbered 2**64-1 is a clear IntegrityError for push and pull."""
    remote_path = tmp_path / "remote"
    with open_store(store_with(tmp_path / "a")) as a:
        push(a, remote_path.as_uri(), "svc")
        remote = warmstart.remote.FileRemote(remote_path)
        key = namespace_dir("svc") + "head"
        raw = remote.get_head(key)
        assert raw is not None
        head = msgspec.msgpack.decode(raw, type=warmstart.remote.RemoteHead)
        forged = msgspec.msgpack.encode(msgspec.structs.replace(head, generation=(1 << 64) - 1))
        remote.swap_head(key, raw, forged)
        a.save("svc", {"records": (RECORDS, make_records(2))})
        with pytest.raises(warmstart.IntegrityError, match="remote generation from 1"):
            push(a, remote, "svc")
    with open_store(tmp_path / "b") as b, pytest.raises(warmstart.IntegrityError):
        pull(b, remote, "svc")


def test_remote_head_of_another_namespace_is_refused(tmp_path: Path) -> None:
    """A head record copied under another namespace's key is refused."""
    remote = warmstart.remote.FileRemote(tmp_path / "remote")
    with open_store(tmp_path / "a") as a:
        a.save("one", {"records": (RECORDS, make_records(2))})
        a.save("two", {"records": (RECORDS, make_records(3))})
        push(a, remote, "one")
        push(a, remote, "two")
    one = namespace_dir("one") + "head"
    two = namespace_dir("two") + "head"
    raw_one, raw_two = remote.get_head(one), remote.get_head(two)
    assert raw_one is not None
    remote.swap_head(two, raw_two, raw_one)
    with open_store(tmp_path / "b") as b, pytest.raises(warmstart.IntegrityError, match="'one'"):
        pull(b, remote, "two")


# -- found by the fuzz campaign (tests/reliability/test_fuzz_hostile.py) -------------------


def test_remote_head_naming_a_path_outside_its_namespace(tmp_path: Path) -> None:
    """A head whose manifest name is '../up' is IntegrityError (was ValueError)."""
    remote = warmstart.remote.FileRemote(tmp_path / "remote")
    with open_store(store_with(tmp_path / "a")) as a:
        push(a, remote, "svc")
    key = namespace_dir("svc") + "head"
    raw = remote.get_head(key)
    assert raw is not None
    head = msgspec.msgpack.decode(raw, type=warmstart.remote.RemoteHead)
    remote.swap_head(
        key, raw, msgspec.msgpack.encode(msgspec.structs.replace(head, manifest="../up"))
    )
    with open_store(tmp_path / "b") as b, pytest.raises(warmstart.IntegrityError, match="names"):
        pull(b, remote, "svc")


@pytest.mark.parametrize(
    "field", ["entries", "stored_bytes", "raw_bytes", "sequence"], ids=lambda f: f"ref.{f}"
)
def test_manifest_numbers_no_writer_makes_are_refused_at_import(tmp_path: Path, field: str) -> None:
    """A chunk reference with a negative or impossible number: refused, not committed."""
    _import_refused_with_first_ref(tmp_path, lambda _: {field: -1}, "chunk references")


def test_sizes_the_manifest_claims_must_match_the_frames_shipped(tmp_path: Path) -> None:
    """An archive whose manifest lies about a chunk's size is refused (it never loaded)."""
    _import_refused_with_first_ref(
        tmp_path, lambda ref: {"stored_bytes": ref.stored_bytes + 1}, "as the manifest says"
    )


def _import_refused_with_first_ref(
    tmp_path: Path, changes: Callable[[Any], dict[str, Any]], refusal: str
) -> None:
    """Export, change the first chunk reference (``changes(ref)``), import: refused, no write."""
    with open_store(store_with(tmp_path / "source")) as source:
        export(source, "svc", tmp_path / "a.wsa")
    data = (tmp_path / "a.wsa").read_bytes()
    manifest = decode_manifest(Codec(), forge.header_of(data)["manifest"])
    section = manifest.sections[0]
    ref = msgspec.structs.replace(section.base[0], **changes(section.base[0]))
    forged = forge.with_section(manifest, section.name, [ref, *section.base[1:]], section.entries)
    (tmp_path / "bad.wsa").write_bytes(forge.archive(forged, forge.chunks_of(data)))
    with open_store(tmp_path / "t") as target:
        with pytest.raises(warmstart.IntegrityError, match=refusal):
            import_archive(target, tmp_path / "bad.wsa")
        assert target.namespaces() == []


def test_an_archive_refused_for_a_bad_chunk_writes_nothing(tmp_path: Path) -> None:
    """Every chunk is checked before the first is written: the target is left byte for byte."""
    blobs = {f"k{i}": Blob(os.urandom(100)) for i in range(200_000)}  # 20 MB: two batches
    with open_store(tmp_path / "source") as source:
        source.save("svc", {"b": (BLOBS, blobs)})
        export(source, "svc", tmp_path / "a.wsa")
    data = (tmp_path / "a.wsa").read_bytes()
    frames = forge.chunks_of(data)
    assert len(frames) > 2
    manifest = decode_manifest(Codec(), forge.header_of(data)["manifest"])
    # The last frame claims a MAC an unkeyed store never writes: its digest is
    # recomputed, so only the frame check at write time can tell.
    bad = bytearray(frames[-1])
    bad[5] |= 0x02
    bad_frame = bytes(bad) + bytes(32)
    section = manifest.sections[0]
    last = section.base[-1]
    swapped = msgspec.structs.replace(
        last, digest=forge.digest_of(bad_frame), stored_bytes=len(bad_frame)
    )
    forged = forge.with_section(
        manifest, section.name, [*section.base[:-1], swapped], section.entries
    )
    (tmp_path / "bad.wsa").write_bytes(forge.archive(forged, [*frames[:-1], bad_frame]))
    with open_store(tmp_path / "t") as target:
        target.save("mine", {"records": (RECORDS, make_records(3))})
        before = tables_of(target)
        with pytest.raises(warmstart.IntegrityError, match="MAC"):
            import_archive(target, tmp_path / "bad.wsa")
        assert tables_of(target) == before


def test_a_pull_refused_half_way_takes_back_its_batches(tmp_path: Path) -> None:
    """A chunk that fails its check after earlier batches were written: the store is as it was."""
    remote = warmstart.remote.FileRemote(tmp_path / "remote", fsync=False)
    data = {f"k{i}": Blob(os.urandom(100)) for i in range(100_000)}  # 10 MB, incompressible
    with open_store(tmp_path / "a") as a:
        a.save("svc", {"b": (BLOBS, data)})
        push(a, remote, "svc")
        refs = a.manifest("svc").sections[0].base
    assert sum(r.stored_bytes for r in refs) > 8 << 20  # more than one batch
    last = refs[-1].digest
    key = namespace_dir("svc") + f"chunks/{last.hex()}"
    remote.put({key: b"\x00" * refs[-1].stored_bytes}, overwrite=True)
    with open_store(tmp_path / "b") as b:
        b.save("mine", {"records": (RECORDS, make_records(3))})
        before = tables_of(b)
        with pytest.raises(warmstart.IntegrityError):
            pull(b, remote, "svc")
        assert tables_of(b) == before
