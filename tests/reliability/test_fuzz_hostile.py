"""A structure-aware fuzz campaign over archives and remote objects (issue 17).

Each case takes a genuine unkeyed archive (or a genuine ``file://`` remote),
changes one structure in it as an attacker without a secret could (a header
field, a manifest field, a chunk reference's counts and sizes, a chunk
payload's shape, a record's length or order, the remote head record, a remote
chunk object; every digest recomputed, see ``_hostile.py``), and brings it
into a real target store: ``import_archive`` or ``pull``, then a load, a read
of every section, the CLI's raw entries and ``verify()``. For every case:

* only ``WarmstartError`` escapes;
* peak memory (``tracemalloc``) stays under the documented bound: the decode
  budget, one decompressed payload (at most 64 MiB), the batches and the
  largest record or object in flight (the campaign lowers
  ``_budget.MAX_DECODED`` to 16 MiB so that hostile payloads of a few MB
  reach it; the default of 512 MiB is scaled, not different);
* a refused input leaves the target's four tables byte for byte as they were.

The default run takes seconds; ``-m slow`` runs a long campaign. Each prints
its seed and counts; ``WARMSTART_SEED`` replays one.
"""

from __future__ import annotations

import collections
import os
import random
import shutil
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from _hostile import mutate_archive, mutate_remote

from conftest import RECORDS, make_records, tables_of
from warmstart import Contract, Store, TrackedDict, WarmstartError, _budget
from warmstart.cli._raw_entries import first_entries
from warmstart.codec import MAX_PAYLOAD, Codec
from warmstart.manifest import decode_manifest
from warmstart.remote import FileRemote, RemoteHead, pull, push
from warmstart.remote._layout import Layout
from warmstart.transfer import export, import_archive

MiB = 1 << 20
#: The decode budget during the campaign (see the module docstring).
BUDGET = 16 * MiB
#: What else a case may hold at once: a chunk's payload once decompressed (a
#: small frame may hold up to the 64 MiB cap), an import's 16 MiB batch of
#: frames (a pull's is 8), the record or object being read and its copy, and
#: slack for the interpreter, LMDB's Python objects and tracemalloc itself.
BATCHES = 16 * MiB
SLACK = 24 * MiB


class Doc(msgspec.Struct):
    body: Any = None


DOCS = Contract("doc", Doc, key=int)
CONTRACTS = {"records": RECORDS, "docs": DOCS}


def bound(largest: int) -> int:
    """The documented peak for a case whose largest record or object is ``largest`` bytes."""
    return BUDGET + MAX_PAYLOAD + BATCHES + 3 * largest + SLACK


class Campaign:
    """Counts of one run, printed at its end."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.peak = 0
        self.peak_case = ""
        self.worst_ratio = 0.0
        self.cases = 0
        self.started = time.perf_counter()

    def report(self, kind: str) -> str:
        seconds = time.perf_counter() - self.started
        return (
            f"\n{kind} fuzz: seed {self.seed}, {self.cases} cases in {seconds:.1f}s; "
            f"outcomes {dict(self.outcomes)}; errors {dict(self.errors.most_common(8))}; "
            f"peak {self.peak / MiB:.1f} MiB ({self.peak_case}), "
            f"worst peak/bound {self.worst_ratio:.2f}"
        )


def exercise(store: Store, namespace: str, campaign: Campaign) -> None:
    """Everything a service or an operator does with what came in."""
    with store.load(namespace) as snapshot:
        for section in snapshot.manifest.sections:
            contract = CONTRACTS.get(section.name, DOCS)
            reads: list[Callable[[], Any]] = [
                lambda s=section, c=contract: snapshot.read(s.name, c),  # type: ignore[misc]
                lambda s=section: first_entries(store, namespace, s, 3),  # type: ignore[misc]
            ]
            for read in reads:
                try:
                    read()
                    campaign.outcomes["section read"] += 1
                except WarmstartError as exc:
                    campaign.outcomes["section read refused"] += 1
                    campaign.errors[type(exc).__name__] += 1
    store.verify()
    store.generations(namespace)


def run_case(
    campaign: Campaign,
    store: Store,
    what: str,
    largest: int,
    bring_in: Callable[[], str],
) -> bool:
    """Run one case under the invariants; True if the input was accepted (store changed).

    ``bring_in`` imports or pulls and returns the namespace it landed in;
    then everything is read back (errors there are the library refusing to
    use what it took in, which is fine as long as they are WarmstartError).
    """
    before = tables_of(store)
    tracemalloc.start()
    tracemalloc.reset_peak()
    accepted = False
    try:
        try:
            namespace = bring_in()
            accepted = True
            try:
                exercise(store, namespace, campaign)
                campaign.outcomes["accepted, loads"] += 1
            except WarmstartError as exc:
                campaign.outcomes["accepted, load refused"] += 1
                campaign.errors[type(exc).__name__] += 1
        except WarmstartError as exc:
            campaign.outcomes["refused"] += 1
            campaign.errors[type(exc).__name__] += 1
        except Exception as exc:
            msg = f"seed {campaign.seed}, case {campaign.cases} ({what}): {exc!r} escaped"
            raise AssertionError(msg) from exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    campaign.cases += 1
    ratio = peak / bound(largest)
    if peak > campaign.peak:
        campaign.peak, campaign.peak_case = peak, what
    campaign.worst_ratio = max(campaign.worst_ratio, ratio)
    assert ratio <= 1, f"seed {campaign.seed} ({what}): peak {peak >> 20} MiB over the bound"
    if not accepted:
        after = tables_of(store)
        assert after == before, f"seed {campaign.seed} ({what}): a refused input changed the store"
    return accepted


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A genuine source: two generations (a base and a delta), exported and pushed."""
    root = tmp_path_factory.mktemp("fuzz")
    tracked = TrackedDict(make_records(3000))
    docs = {i: Doc({"n": i, "tags": list(range(i % 5))}) for i in range(200)}
    with Store(root / "source", sync=False) as source:
        first = source.save("svc", {"records": (RECORDS, tracked), "docs": (DOCS, docs)})
        for i in range(30):
            tracked[f"k{i}"] = make_records(1, salt=i)["k0"]
        source.save("svc", {"records": (RECORDS, tracked), "docs": (DOCS, docs)})
        export(source, "svc", root / "full.wsa")
        export(source, "svc", root / "delta.wsa", since=first)
        remote = FileRemote(root / "remote", fsync=False)
        push(source, remote, "svc")
    # The target: a namespace of its own, and one that imports and pulls land in.
    with Store(root / "target", sync=False) as target:
        target.save("mine", {"records": (RECORDS, make_records(50))})
        target.save("svc", {"records": (RECORDS, make_records(20, salt=7))})
    return {
        "root": root,
        "archives": [(root / "full.wsa").read_bytes(), (root / "delta.wsa").read_bytes()],
        "remote": root / "remote",
        "target": root / "target",
    }


@pytest.fixture
def budget() -> Iterator[None]:
    saved = _budget.MAX_DECODED
    _budget.MAX_DECODED = BUDGET
    try:
        yield
    finally:
        _budget.MAX_DECODED = saved


def seed() -> int:
    return int(os.environ.get("WARMSTART_SEED", random.randrange(2**32)))


class Target:
    """The target store of a campaign, put back from its template after an accepted case."""

    def __init__(self, template: Path, path: Path) -> None:
        self.template = template
        self.path = path
        self.store = self._fresh()

    def _fresh(self) -> Store:
        if self.path.exists():
            shutil.rmtree(self.path)
        shutil.copytree(self.template, self.path)
        return Store(self.path, sync=False)

    def reset(self) -> None:
        self.store.close()
        self.store = self._fresh()

    def close(self) -> None:
        self.store.close()


def archive_campaign(corpus: dict[str, Any], tmp_path: Path, cases: int, seconds: float) -> str:
    campaign = Campaign(seed())
    rng = random.Random(campaign.seed)
    target = Target(corpus["target"], tmp_path / "target")
    path = tmp_path / "case.wsa"
    try:
        while campaign.cases < cases and time.perf_counter() - campaign.started < seconds:
            data, what = mutate_archive(rng, rng.choice(corpus["archives"]))
            path.write_bytes(data)
            namespace = rng.choice([None, None, "svc", "fresh"])

            def case(namespace: str | None = namespace) -> str:
                return import_archive(target.store, path, namespace=namespace).namespace

            if run_case(campaign, target.store, what, len(data), case):
                target.reset()
    finally:
        target.close()
    return campaign.report("archive")


def remote_campaign(corpus: dict[str, Any], tmp_path: Path, cases: int, seconds: float) -> str:
    campaign = Campaign(seed())
    rng = random.Random(campaign.seed)
    target = Target(corpus["target"], tmp_path / "target")
    layout = Layout("svc")
    original = FileRemote(corpus["remote"], fsync=False)
    raw_head = original.get_head(layout.head)
    assert raw_head is not None
    head = msgspec.msgpack.decode(raw_head, type=RemoteHead)
    manifest_raw = original.get([layout.manifest(head.manifest)])[layout.manifest(head.manifest)]
    manifest = decode_manifest(Codec(), manifest_raw)
    frames = {
        d: original.get([layout.chunk(d)])[layout.chunk(d)] for d in sorted(manifest.digests())
    }
    try:
        while campaign.cases < cases and time.perf_counter() - campaign.started < seconds:
            copy = tmp_path / "remote"
            if copy.exists():
                shutil.rmtree(copy)
            shutil.copytree(corpus["remote"], copy)
            remote = FileRemote(copy, fsync=False)
            objects, new_head, what = mutate_remote(rng, head, manifest, frames)
            remote.put({layout.dir + k: v for k, v in objects.items()}, overwrite=True)
            if new_head is not None:
                remote.swap_head(layout.head, raw_head, new_head)
            largest = max([len(v) for v in objects.values()] + [len(new_head or b""), 1])

            def case(remote: FileRemote = remote) -> str:
                return pull(target.store, remote, "svc").namespace

            if run_case(campaign, target.store, what, largest, case):
                target.reset()
    finally:
        target.close()
    return campaign.report("remote")


@pytest.mark.usefixtures("budget")
class TestFuzz:
    def test_archives(self, corpus: dict[str, Any], tmp_path: Path) -> None:
        """Mutated archives: only WarmstartError, bounded memory, refused leaves no trace."""
        print(archive_campaign(corpus, tmp_path, cases=400, seconds=12))

    def test_remote_objects(self, corpus: dict[str, Any], tmp_path: Path) -> None:
        """Mutated remote heads, manifests and chunks: the same invariants, for pull."""
        print(remote_campaign(corpus, tmp_path, cases=200, seconds=8))

    @pytest.mark.slow
    def test_archives_long(self, corpus: dict[str, Any], tmp_path: Path) -> None:
        print(archive_campaign(corpus, tmp_path, cases=5000, seconds=300))

    @pytest.mark.slow
    def test_remote_objects_long(self, corpus: dict[str, Any], tmp_path: Path) -> None:
        print(remote_campaign(corpus, tmp_path, cases=2000, seconds=200))
