"""Full saves streamed from a private copy of a dict, a chunk at a time."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

import warmstart
from warmstart.codec import Codec
from warmstart.store._chunks import FIRST_CHUNK, SERIAL_MAX, encode_chunks

NS = "svc"


class Row(msgspec.Struct, frozen=True):
    n: int


ROWS = warmstart.Contract("row", Row, key=str)


def rows(count: int) -> dict[str, Row]:
    return {f"k{i}": Row(i) for i in range(count)}


def load(store: warmstart.Store) -> dict[str, Row]:
    with store.load(NS) as snapshot:
        return snapshot.section("s", ROWS)


@pytest.mark.parametrize("size", [FIRST_CHUNK + 10, SERIAL_MAX + 1000])
@pytest.mark.parametrize("tracked", [False, True])
def test_a_bad_value_in_a_late_chunk_writes_nothing_and_loses_no_change(
    store_path: Path, size: int, tracked: bool
) -> None:
    """Chunks before the bad one were encoded (in a worker above SERIAL_MAX): none is stored."""
    data = warmstart.TrackedDict(rows(size)) if tracked else rows(size)
    with warmstart.Store(store_path) as store:
        store.save(NS, {"s": (ROWS, data)}, mode="delta")
        data["new"] = Row(-1)
        data["zzz"] = "not a row"  # type: ignore[assignment]
        with pytest.raises(warmstart.EncodeError, match="got str"):
            store.save(NS, {"s": (ROWS, data)}, mode="full")
        assert [info.generation for info in store.generations(NS)] == [1]
        assert load(store) == rows(size)
        del data["zzz"]
        generation = store.save(NS, {"s": (ROWS, data)}, mode="auto" if tracked else "delta")
        # The failed save left the baseline as it was (a tracked mapping got
        # back the change it took): the next save is a delta holding the change.
        assert store.manifest(NS, generation).kind == "delta"
        assert load(store) == dict(data)


def test_a_base_saved_for_deltas_keeps_its_fingerprints(store_path: Path) -> None:
    data = rows(SERIAL_MAX + 5)
    with warmstart.Store(store_path) as store:
        store.save(NS, {"s": (ROWS, data)}, mode="delta")
        data["k3"] = Row(-3)
        del data["k4"]
        generation = store.save(NS, {"s": (ROWS, data)}, mode="delta")
        manifest = store.manifest(NS, generation)
        assert manifest.kind == "delta"
        assert manifest.sections[0].deltas[0].entries == 1
        assert load(store) == data


def test_an_ordered_dict_is_saved_in_its_own_order(store_path: Path) -> None:
    data = collections.OrderedDict(rows(3000))
    data.move_to_end("k0")
    data.move_to_end("k10", last=False)
    with warmstart.Store(store_path) as store:
        store.save(NS, {"s": (ROWS, data)})
        assert list(load(store)) == list(data)


def test_keys_and_values_of_different_lengths_are_refused() -> None:
    with pytest.raises(warmstart.EncodeError, match="as many keys as values, got 2 and 1"):
        encode_chunks(ROWS, Codec(), ["a", "b"], [Row(1)])


def test_a_base_rewritten_after_another_writer_keeps_fingerprints(store_path: Path) -> None:
    """The head moved under a delta-mode save: it is redone as bases, then deltas follow.

    The tracked section's delta finds the head moved and the whole save is redone
    in full; the untracked section, saved before without fingerprints, gets
    them then, so the next delta-mode save diffs it instead of writing it again.
    """
    tracked, untracked = warmstart.TrackedDict(rows(3000)), rows(3000)
    sections = {"t": (ROWS, tracked), "u": (ROWS, untracked)}
    with warmstart.Store(store_path) as store:
        store.save(NS, sections)  # "auto": the untracked section keeps no fingerprints
        other = f"""
import msgspec, warmstart
class Row(msgspec.Struct, frozen=True):
    n: int
with warmstart.Store({str(store_path)!r}) as other:
    other.save({NS!r}, {{"s": (warmstart.Contract("row", Row, key=str), {{"x": Row(1)}})}})
"""
        subprocess.run([sys.executable, "-c", other], check=True, timeout=60)  # moves the head
        tracked["k1"] = Row(-1)
        moved = store.save(NS, sections, mode="delta")
        assert store.manifest(NS, moved).kind == "full"
        tracked["k2"] = Row(-2)
        untracked["k2"] = Row(-2)
        generation = store.save(NS, sections, mode="delta")
        manifest = store.manifest(NS, generation)
        assert [(s.name, len(s.deltas)) for s in manifest.sections] == [("t", 1), ("u", 1)]
        with store.load(NS) as snapshot:
            assert snapshot.section("t", ROWS) == dict(tracked)
            assert snapshot.section("u", ROWS) == untracked
