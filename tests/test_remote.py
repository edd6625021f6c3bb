"""Push and pull through every remote backend, against real servers (warmstart.remote)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import warmstart
from conftest import RECORDS, Record, make_records
from remote_workers.checks import assert_complete, change, keys_of, loaded, save
from remote_workers.servers import (  # noqa: F401 - fixtures
    Backend,
    _backend,
    _moto,
    _redis,
    _remote,
)
from warmstart.remote import (
    PullReport,
    PushReport,
    collect_remote,
    list_remote,
    pull,
    push,
)
from warmstart.remote._layout import Layout, decode_head, remote_manifest
from warmstart.remote._sync import PULLED_FROM, PUSHED_FROM, namespace_dir


class TestRoundTrip:
    def test_push_then_pull_loads_equal(self, source, target, remote, tracked):
        """A generation pushed from one store and pulled into another loads equal, metadata kept."""
        save(source, tracked, "tenant-1/svc", watermark={"lsn": 7}, tags={"release": "r1"})
        pushed = push(source, remote, "tenant-1/svc")
        assert isinstance(pushed, PushReport)
        assert (pushed.status, pushed.generation, pushed.local_generation) == ("pushed", 1, 1)
        assert pushed.chunks_shipped == len(source.manifest("tenant-1/svc").digests())
        pulled = pull(target, remote, "tenant-1/svc")
        assert isinstance(pulled, PullReport)
        assert (pulled.status, pulled.generation, pulled.remote_generation) == ("pulled", 1, 1)
        assert pulled.chunks_fetched == pushed.chunks_shipped
        assert pulled.bytes_fetched == pushed.bytes_shipped
        assert loaded(target, "tenant-1/svc") == dict(tracked)
        original = source.manifest("tenant-1/svc")
        manifest = target.manifest("tenant-1/svc")
        assert manifest.watermark == {"lsn": 7}
        assert manifest.created_at == original.created_at
        assert manifest.lineage == original.lineage
        assert manifest.tags["release"] == "r1"
        assert manifest.tags[PUSHED_FROM].endswith(":1")
        assert manifest.tags[PULLED_FROM] == f"{remote.url}#1"
        assert target.verify().ok

    def test_delta_generation_round_trip(self, source, target, remote, tracked):
        """A delta generation ships its base and delta chunks and replays the same after a pull."""
        save(source, tracked)
        change(tracked, 0.01, salt=1)
        del tracked["k5"]
        save(source, tracked)
        assert source.manifest("svc").kind == "delta"
        push(source, remote, "svc")
        pull(target, remote, "svc")
        assert loaded(target) == dict(tracked)
        assert list(loaded(target)) == list(loaded(source))

    def test_push_and_pull_again_change_nothing(self, source, target, remote, tracked):
        """Pushing an unchanged head, or pulling a generation already present, writes nothing."""
        save(source, tracked)
        push(source, remote, "svc")
        again = push(source, remote, "svc")
        assert (again.status, again.generation, again.chunks_shipped) == ("present", 1, 0)
        pull(target, remote, "svc")
        second = pull(target, remote, "svc")
        assert (second.status, second.generation, second.chunks_fetched) == ("present", 1, 0)
        assert [g.generation for g in target.generations("svc")] == [1]

    def test_pull_of_unknown_namespace_is_not_found(self, target, remote):
        """Pulling a namespace the remote never held raises CheckpointNotFoundError."""
        with pytest.raises(warmstart.CheckpointNotFoundError, match="found no head"):
            pull(target, remote, "nothing-here")
        assert target.namespaces() == []

    def test_pulled_generation_continues_with_deltas(self, source, target, remote, tracked):
        """After a pull, restoring and saving on the target writes a delta on the pulled base."""
        save(source, tracked)
        push(source, remote, "svc")
        pull(target, remote, "svc")
        b = warmstart.boot(target, namespace="svc", signals=False, checkpoint_on_exit=False)
        try:
            with b:
                holder = _Holder(warmstart.TrackedDict())
            assert b.wait_ready(10)
            assert holder.records == dict(tracked)
            # Records can change in place: comparing read every value, which
            # counts as writing it; this test is about the one new entry.
            holder.records.mark_clean()
            holder.records["new"] = Record(1, "n", 0.0, [], True, "a")
            assert b.checkpoint().generation == 2
        finally:
            b.close()
        assert target.manifest("svc").kind == "delta"
        result = push(target, remote, "svc")
        assert (result.status, result.chunks_shipped) == ("pushed", 1)

    def test_remote_generations_count_pushes_not_local_numbers(self, source, target, remote):
        """Remote numbering is the remote's own; the local head never goes backwards on pull."""
        for n in range(4):
            save(target, make_records(10, salt=n))
        save(source, make_records(50))
        push(source, remote, "svc")
        pulled = pull(target, remote, "svc")
        assert (pulled.remote_generation, pulled.generation) == (1, 5)
        assert loaded(target) == make_records(50)


@warmstart.warm(records=warmstart.state(RECORDS, section="records"))
class _Holder:
    def __init__(self, records: Any) -> None:
        self.records = records


class TestIncremental:
    def test_one_percent_change_ships_about_one_percent(self, source, remote, tracked):
        """After a 1% change the push ships one delta chunk: about 1% of the full push's bytes."""
        save(source, tracked)
        full = push(source, remote, "svc")
        change(tracked, 0.01, salt=2)
        save(source, tracked)
        delta = push(source, remote, "svc")
        assert delta.status == "pushed"
        assert delta.chunks_shipped == 1
        assert delta.chunks_skipped == full.chunks_shipped
        assert delta.bytes_shipped < 0.03 * full.bytes_shipped

    def test_pull_fetches_only_what_is_missing(self, source, target, remote, tracked):
        """A second pull fetches only the chunks the target lacks."""
        save(source, tracked)
        push(source, remote, "svc")
        first = pull(target, remote, "svc")
        change(tracked, 0.01, salt=3)
        save(source, tracked)
        push(source, remote, "svc")
        second = pull(target, remote, "svc")
        assert (second.chunks_fetched, second.chunks_skipped) == (1, first.chunks_fetched)
        assert loaded(target) == dict(tracked)

    def test_progress_counts_skipped_chunks_as_done(self, source, remote, tracked):
        """Progress reports end at all bytes done, with skipped chunks counted at once."""
        save(source, tracked)
        push(source, remote, "svc")
        change(tracked, 0.01, salt=4)
        save(source, tracked)
        seen: list[Any] = []
        push(source, remote, "svc", progress=seen.append)
        assert seen[0].chunks_done == seen[0].chunks_total - 1
        assert seen[-1].fraction == 1.0
        assert seen[-1].operation == "push"


class TestTampering:
    def test_flipped_byte_in_a_chunk_is_rejected(self, source, target, remote, tracked):
        """A chunk damaged on the remote fails pull with IntegrityError and nothing is committed."""
        save(source, tracked)
        push(source, remote, "svc")
        key = min(keys_of(remote, "svc")["chunks"])
        frame = bytearray(remote.get([key])[key])
        frame[len(frame) // 2] ^= 0x01
        remote.put({key: bytes(frame)}, overwrite=True)
        with pytest.raises(warmstart.IntegrityError, match="damaged"):
            pull(target, remote, "svc")
        assert target.namespaces() == []

    def test_missing_chunk_is_rejected(self, source, target, remote, tracked):
        """A chunk gone from the remote (an evicting Redis, a hand prune) fails pull clearly."""
        save(source, tracked)
        push(source, remote, "svc")
        remote.delete([max(keys_of(remote, "svc")["chunks"])])
        with pytest.raises(warmstart.IntegrityError, match="missing"):
            pull(target, remote, "svc")
        assert target.namespaces() == []

    def test_forged_generation_fails_the_mac(self, tmp_path, remote):
        """With a secret, a generation an attacker publishes under another key is rejected."""
        with warmstart.Store(tmp_path / "honest", secret=b"team-key", sync=False) as honest:
            save(honest, make_records(300))
            push(honest, remote, "svc")
        head = Layout("svc").head
        remote.delete([k for k in remote.list(namespace_dir("svc")) if k.startswith(head)])
        with warmstart.Store(tmp_path / "evil", secret=b"other-key", sync=False) as evil:
            save(evil, {"k1": Record(666, "evil", 0.0, [], True, "x")})
            push(evil, remote, "svc")
        with warmstart.Store(tmp_path / "victim", secret=b"team-key", sync=False) as victim:
            with pytest.raises(warmstart.IntegrityError, match="MAC"):
                pull(victim, remote, "svc")
            assert victim.namespaces() == []

    def test_keyed_data_into_an_unkeyed_store_is_refused(self, tmp_path, target, remote):
        """Pulling keyed checkpoints into a store without the secret names the fix."""
        with warmstart.Store(tmp_path / "keyed", secret=b"team-key", sync=False) as keyed:
            save(keyed, make_records(10))
            push(keyed, remote, "svc")
        with pytest.raises(warmstart.IntegrityError, match="secret"):
            pull(target, remote, "svc")
        save(target, make_records(5))
        with pytest.raises(warmstart.IntegrityError, match="secret"):
            push(target, remote, "svc")

    def test_keyed_round_trip(self, tmp_path, remote):
        """Stores sharing a secret push and pull; every frame carries its MAC across."""
        with warmstart.Store(tmp_path / "a", secret=b"team-key", sync=False) as a:
            save(a, make_records(2000))
            push(a, remote, "svc")
        with warmstart.Store(tmp_path / "b", secret=b"team-key", sync=False) as b:
            pull(b, remote, "svc")
            assert loaded(b) == make_records(2000)
            assert b.verify().ok


class TestIsolation:
    NAMESPACES = ("a", "a/chunks", "a/@ws", "tenant-1", "tenant-1/svc", "tenant-10", ".x/y", "a//b")

    def test_namespaces_never_share_or_touch_keys(self, tmp_path, remote):
        """Each namespace lives under its own prefix; pulls and collection stay inside it."""
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            for n, namespace in enumerate(self.NAMESPACES):
                save(store, make_records(50, prefix=f"{n}-"), namespace)
                push(store, remote, namespace)
        prefixes = {ns: namespace_dir(ns) for ns in self.NAMESPACES}
        for ns, prefix in prefixes.items():
            others = [p for other, p in prefixes.items() if other != ns]
            assert not any(p.startswith(prefix) for p in others), (ns, prefix)
        before = remote.list("")
        collect_remote(remote, "a", grace=0)
        assert remote.list("") == before
        for n, namespace in enumerate(self.NAMESPACES):
            with warmstart.Store(tmp_path / f"t{n}", sync=False) as target:
                pull(target, remote, namespace)
                assert loaded(target, namespace) == make_records(50, prefix=f"{n}-")
        assert [h.namespace for h in list_remote(remote)] == sorted(self.NAMESPACES)

    def test_namespace_directories_escape_their_parts(self):
        """Reserved characters, empty parts and leading dots are escaped in remote prefixes."""
        assert namespace_dir("tenant-42/pricing") == "tenant-42/pricing/@ws/"
        assert namespace_dir("a/@ws") == "a/%40ws/@ws/"
        assert namespace_dir("a//b") == "a/@e/b/@ws/"
        assert namespace_dir("../x") == "%2E./x/@ws/"
        assert namespace_dir("ü 1%") == "%C3%BC%201%25/@ws/"


class TestRetention:
    def test_remote_keeps_only_retained_generations(self, source, remote):
        """With keep=2 only two manifests and the chunks they reference stay on the remote."""
        for n in range(5):
            save(source, make_records(3000, salt=n))
            push(source, remote, "svc", keep=2, grace=0)
        keys = keys_of(remote, "svc")
        assert len(keys["manifests"]) == 2
        layout = Layout("svc")
        head = decode_head(remote.get_head(layout.head) or b"", remote.url)
        assert [g for g, _ in head.history] == [5, 4]
        referenced = set()
        for _, name in head.history:
            referenced |= remote_manifest(remote, layout, source.codec, name).digests()
        assert {bytes.fromhex(k.rpartition("/")[2]) for k in keys["chunks"]} == referenced
        assert_complete(remote, "svc", source.codec)

    def test_orphans_go_only_after_the_grace_period(self, source, target, remote):
        """Objects no generation references are collected once older than the grace period."""
        save(source, make_records(500))
        push(source, remote, "svc")
        layout = Layout("svc")
        orphans = [layout.chunk(b"\x01" * 16), layout.manifest(f"{9:020d}-{'ab' * 16}")]
        remote.put(dict.fromkeys(orphans, b"left by an interrupted push"))
        first = collect_remote(remote, "svc")
        # Redis deletes at once (its deletions are atomic with the head check).
        assert first == (2 if remote.atomic else 0)
        assert collect_remote(remote, "svc", grace=0) == (0 if remote.atomic else 2)
        assert not set(remote.stat(orphans))
        pull(target, remote, "svc")
        assert loaded(target) == make_records(500)

    def test_collect_keeps_everything_when_a_manifest_is_unreadable(self, source, remote):
        """If a retained manifest cannot be read, collection deletes nothing."""
        save(source, make_records(500))
        push(source, remote, "svc")
        manifest = keys_of(remote, "svc")["manifests"][0]
        remote.put({manifest: b"garbage"}, overwrite=True)
        before = remote.list("")
        assert collect_remote(remote, "svc", grace=0) == 0
        assert remote.list("") == before


class TestBehindAndForce:
    def test_older_state_is_not_pushed_over_a_newer_head(self, tmp_path, remote, clock):
        """A generation saved before the remote head is reported behind; force pushes it."""
        with (
            warmstart.Store(tmp_path / "old", sync=False, clock=clock) as old,
            warmstart.Store(tmp_path / "new", sync=False, clock=clock) as new,
        ):
            save(old, make_records(10))
            clock.advance(60)
            save(new, make_records(20))
            push(new, remote, "svc")
            behind = push(old, remote, "svc")
            assert (behind.status, behind.generation) == ("behind", 1)
            forced = push(old, remote, "svc", force=True)
            assert (forced.status, forced.generation) == ("pushed", 2)


def test_module_dir_lists_public_names():
    """The remote package and its modules list exactly their public names."""
    from warmstart import remote

    for module in (remote,):
        assert sorted(dir(module)) == sorted(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_reports_encode_to_json():
    """Reports are plain msgspec Structs that encode to JSON."""
    report = PushReport(
        namespace="svc", remote="x", status="pushed", generation=1, local_generation=1
    )
    assert msgspec.json.decode(msgspec.json.encode(report))["status"] == "pushed"
