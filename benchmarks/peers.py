"""Each way of saving a dict to disk and loading it back, as a user would call it.

``save(path, data)`` writes ``data`` durably under the directory ``path``;
``load(path)`` returns the dict. warmstart stores msgspec Structs; the others
store what pickle stores (plain dicts, or bytes for blobs).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import pickle
import shelve
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.generate_data import BLOBS, RECORDS

NAMESPACE = "bench"
SECTION = "data"


def contract_for(kind: str) -> Any:
    return {"records": RECORDS, "blobs": BLOBS}[kind]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            _fsync_file(p)
    _fsync_file(path)


# -- warmstart ---------------------------------------------------------------------


def warmstart_save(path: Path, data: dict[str, Any], kind: str) -> None:
    import warmstart

    with warmstart.Store(path) as store:
        store.save(NAMESPACE, {SECTION: (contract_for(kind), data)}, mode="full")


def warmstart_load(
    path: Path, kind: str, *, freeze_gc: bool = False, generation: int | None = None
) -> dict[str, Any]:
    import warmstart

    with warmstart.Store(path) as store, store.load(NAMESPACE, generation=generation) as snap:
        return snap.read(SECTION, contract_for(kind), freeze_gc=freeze_gc).entries


# -- pickle --------------------------------------------------------------------------


def pickle_save(path: Path, data: dict[str, Any], _kind: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "state.pickle").open("wb") as f:
        pickle.dump(data, f, protocol=5)
        f.flush()
        os.fsync(f.fileno())


def pickle_load(path: Path, _kind: str) -> dict[str, Any]:
    with (path / "state.pickle").open("rb") as f:
        return pickle.load(f)  # type: ignore[no-any-return]


def pickle_zstd_save(path: Path, data: dict[str, Any], _kind: str) -> None:
    import zstandard

    path.mkdir(parents=True, exist_ok=True)
    blob = zstandard.ZstdCompressor(level=3).compress(pickle.dumps(data, protocol=5))
    with (path / "state.pickle.zst").open("wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())


def pickle_zstd_load(path: Path, _kind: str) -> dict[str, Any]:
    import zstandard

    with (path / "state.pickle.zst").open("rb") as f:
        return pickle.loads(zstandard.ZstdDecompressor().decompress(f.read()))  # type: ignore[no-any-return]


# -- key-value stores -------------------------------------------------------------------


def shelve_save(path: Path, data: dict[str, Any], _kind: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with shelve.open(str(path / "state"), flag="n", protocol=5) as shelf:
        for k, v in data.items():
            shelf[k] = v
    _fsync_tree(path)  # dbm.dumb has no sync of its own


def shelve_load(path: Path, _kind: str) -> dict[str, Any]:
    with shelve.open(str(path / "state"), flag="r") as shelf:
        return dict(shelf.items())


def diskcache_save(path: Path, data: dict[str, Any], _kind: str) -> None:
    import diskcache

    with diskcache.Cache(str(path)) as cache, cache.transact():
        for k, v in data.items():
            cache.set(k, v)


def diskcache_load(path: Path, _kind: str) -> dict[str, Any]:
    import diskcache

    with diskcache.Cache(str(path)) as cache:
        return {k: cache[k] for k in cache}


def sqlitedict_save(path: Path, data: dict[str, Any], _kind: str) -> None:
    from sqlitedict import SqliteDict

    path.mkdir(parents=True, exist_ok=True)
    with SqliteDict(str(path / "state.sqlite"), autocommit=False) as db:
        db.update(data)
        db.commit()


def sqlitedict_load(path: Path, _kind: str) -> dict[str, Any]:
    from sqlitedict import SqliteDict

    with SqliteDict(str(path / "state.sqlite"), flag="r") as db:
        return dict(db.items())


def available(name: str) -> bool:
    """Whether the peer's package is installed (the bench extra brings them all)."""
    module = {"diskcache": "diskcache", "sqlitedict": "sqlitedict", "pickle-zstd": "zstandard"}
    if name not in module:
        return True
    return importlib.util.find_spec(module[name]) is not None


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    label: str
    save: Callable[[Path, dict[str, Any], str], None]
    load: Callable[[Path, str], dict[str, Any]]
    #: Stores msgspec Structs (else: plain dicts / bytes, as pickle does).
    structs: bool = False
    #: Seconds at 1M records are tens of seconds: measured once per run.
    slow: bool = False


METHODS = {
    m.name: m
    for m in (
        Method("warmstart", "warmstart (LMDB, zstd1)", warmstart_save, warmstart_load, True),
        Method("pickle", "pickle + fsync", pickle_save, pickle_load),
        Method("pickle-zstd", "pickle + zstd3 + fsync", pickle_zstd_save, pickle_zstd_load),
        Method(
            "diskcache", "diskcache (one transaction)", diskcache_save, diskcache_load, slow=True
        ),
        Method(
            "sqlitedict", "sqlitedict (one commit)", sqlitedict_save, sqlitedict_load, slow=True
        ),
        Method("shelve", "shelve (dbm.dumb)", shelve_save, shelve_load, slow=True),
    )
}
