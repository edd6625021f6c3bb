"""One Store shared by threads while a save needs more map: no hang, no crash.

``Env._grow`` calls ``lmdb.Environment.set_mapsize`` from the saving thread.
py-lmdb invalidates (aborts) every transaction of the environment there,
including those other threads of the process are using at that moment: a
write transaction another thread just began (its writer mutex is then
released from the wrong thread), and the read transaction of a load or a
snapshot whose frame (a zero-copy memoryview into the old map) is being
hashed or decompressed with the GIL released while the map is unmapped.

The store now reserves its whole map at open, so nothing grows ("whole-map");
where that reservation is refused, the map grows in place and writes are
serialised ("growing-map", forced with ``RESERVE_WHOLE_MAP = False``).

Each scenario runs in a child process, so a hang or a segfault is a test
failure instead of taking pytest down. The map starts at 1 MiB (the module
constant ``INITIAL_MAP``; nothing of the store or codec is replaced) so that
growth happens after a few MiB instead of 256 MiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PRELUDE = textwrap.dedent(
    """
    import faulthandler, os, sys, threading
    import msgspec
    import warmstart
    import warmstart.store._env

    faulthandler.enable()
    faulthandler.dump_traceback_later(4, exit=True)  # a hang exits with status 1
    warmstart.store._env.INITIAL_MAP = 1 << 20
    warmstart.store._env.RESERVE_WHOLE_MAP = os.environ["RESERVE"] == "1"

    class Row(msgspec.Struct):
        v: bytes

    ROWS = warmstart.Contract("row", Row, key=int)
    store = warmstart.Store(sys.argv[1], sync=False)
    BLOB = {j: Row(os.urandom(1000)) for j in range(6000)}

    def grow():
        # Six saves of 1..6 MB: the 1 MiB map doubles several times.
        for i in range(1, 7):
            store.save("big", {"r": (ROWS, dict(list(BLOB.items())[: 1000 * i]))})
    """
)


def _run(store_path: Path, body: str, *, reserve: bool = True) -> subprocess.CompletedProcess[str]:
    script = PRELUDE + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script, str(store_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "RESERVE": "1" if reserve else "0"},
    )


@pytest.mark.parametrize("reserve", [True, False], ids=["whole-map", "growing-map"])
def test_save_of_other_namespace_while_map_grows_neither_hangs_nor_fails(
    store_path: Path, reserve: bool
) -> None:
    """Saves of namespace "b" in one thread while a save of "big" grows the map.

    Observed: every write of the store hangs for ever in ``begin(write=True)``
    (both threads), or every later save fails with "mdb_txn_begin: Invalid
    argument" - the LMDB writer lock is left in a broken state.
    """
    done = _run(
        store_path,
        """
        stop = threading.Event()
        errors = []
        def saver():
            n = 0
            while not stop.is_set():
                try:
                    store.save("b", {"r": (ROWS, {n: Row(b"x")})})
                except Exception as exc:
                    errors.append(repr(exc))
                n += 1
        thread = threading.Thread(target=saver)
        thread.start()
        grow()
        stop.set()
        thread.join()
        assert not errors, (len(errors), errors[:2])
        store.save("b", {"r": (ROWS, {-1: Row(b"y")})})
        with store.load("b") as snapshot:
            assert snapshot.section("r", ROWS) == {-1: Row(b"y")}
        print("OK")
        """,
        reserve=reserve,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK" in done.stdout


def test_load_while_another_thread_grows_the_map_does_not_crash(store_path: Path) -> None:
    """A thread loading and reading a namespace while another thread's save grows the map.

    Observed: the process dies with SIGSEGV in ``Codec.decode``/``verify``
    (zstd or BLAKE2b reading a frame's memoryview after the map was remapped).
    A StoreError telling the reader to reload would be acceptable; a crash is not.
    """
    done = _run(
        store_path,
        """
        store.save("a", {"r": (ROWS, {j: Row(os.urandom(3000)) for j in range(100)})})
        stop = threading.Event()
        unexpected = []
        def reader():
            while not stop.is_set():
                try:
                    with store.load("a") as snapshot:
                        snapshot.section("r", ROWS)
                except warmstart.errors.WarmstartError:
                    pass  # "the save grew the map: reload" is documented
                except Exception as exc:
                    unexpected.append(repr(exc))
        thread = threading.Thread(target=reader)
        thread.start()
        grow()
        stop.set()
        thread.join()
        assert not unexpected, unexpected[:2]
        with store.load("a") as snapshot:
            assert len(snapshot.section("r", ROWS)) == 100
        print("OK")
        """,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert "OK" in done.stdout
