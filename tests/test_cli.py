"""The `warmstart` console script, run in subprocesses against real stores."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lmdb
import msgspec
import pytest

import warmstart
from conftest import RECORDS, FakeClock, Record, make_records
from warmstart import cli, transfer

WARMSTART = str(Path(sys.executable).parent / "warmstart")


def run(
    *args: Any, cwd: Path | None = None, prefix: Sequence[str] = (), **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, WARMSTART, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


def run_json(*args: Any, **kwargs: Any) -> Any:
    proc = run(*args, "--json", **kwargs)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_on_pty(*args: Any, answer: str | None = None) -> tuple[int, str, str]:
    """Run with stdin and stderr on a terminal; return (code, stdout, terminal output)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [WARMSTART, *map(str, args)], stdin=slave, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    if answer is not None:
        os.write(master, answer.encode())
    seen = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        seen += data
    os.close(master)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(timeout=60), out, seen.decode(errors="replace")


def assert_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """One clear line on stderr, no traceback; return it."""
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.match(r"warmstart( \w+)?: error: ", lines[0])
    return lines[0]


def fill(path: Path, *, secret: bytes | None = None) -> dict[str, Any]:
    """A store with a delta generation and a second namespace; returns what it holds."""
    data = warmstart.TrackedDict(make_records(3000))
    with warmstart.Store(path, sync=False, secret=secret) as store:
        store.save("svc", {"records": (RECORDS, data)}, watermark={"lsn": 41})
        data["k1"] = Record(-1, "changed", 0.0, [], False, "z")
        del data["k0"]
        data["new"] = Record(7, "new", 1.0, [1], True, "a")
        store.save("svc", {"records": (RECORDS, data)}, watermark={"lsn": 42})
        store.save(
            "other/ns",
            {"a": (RECORDS, make_records(3)), "b": (RECORDS, {})},
            tags={"release": "r7"},
        )
        with store.load("svc") as snapshot:
            svc = snapshot.section("records", RECORDS)
    return {"svc": svc}


@pytest.fixture
def populated(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "store"
    return path, fill(path)


def files_of(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


class TestLs:
    def test_lists_generations(self, populated):
        """`ls` shows every namespace's generations with head, kind, size and chain."""
        path, _ = populated
        proc = run("ls", path)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert lines[0].split()[:5] == ["NAMESPACE", "GEN", "HEAD", "KIND", "AGE"]
        assert lines[0].split()[5:] == ["SIZE", "SECTIONS", "ENTRIES", "CHAIN", "NOTE"]
        assert lines[2].split()[:4] == ["svc", "2", "*", "delta"]
        assert lines[2].split()[-2:] == ["3000", "1"]
        assert lines[3].split()[:3] == ["svc", "1", "full"]

    def test_json(self, populated):
        """`ls --json` gives namespaces, generations, entries and delta chain."""
        path, _ = populated
        data = run_json("ls", path)
        by_ns = {n["namespace"]: n["generations"] for n in data["namespaces"]}
        assert sorted(by_ns) == ["other/ns", "svc"]
        head, first = by_ns["svc"]
        assert (head["generation"], head["head"], head["kind"], head["delta_chain"]) == (
            2,
            True,
            "delta",
            1,
        )
        assert (head["entries"], head["watermark"], first["head"]) == (3000, {"lsn": 42}, False)
        assert head["age"] >= 0
        assert by_ns["other/ns"][0]["sections"] == {"a": 3, "b": 0}

    def test_quarantined_generations_are_marked(self, populated):
        """A generation set aside by the crash-loop breaker is marked with its reason."""
        path, _ = populated
        with warmstart.Store(path, sync=False) as store:
            store.quarantine("svc", 2, "boot died while restoring")
        line = next(x for x in run("ls", path).stdout.splitlines() if x.startswith("svc  "))
        assert line.endswith("quarantined: boot died while restoring")
        data = run_json("ls", path)
        svc = next(n for n in data["namespaces"] if n["namespace"] == "svc")["generations"]
        assert [g["quarantined"] for g in svc] == ["boot died while restoring", None]
        assert run_json("inspect", path, "svc")["quarantined"] == "boot died while restoring"
        assert "quarantined  boot died while restoring" in run("inspect", path, "svc").stdout

    def test_ages_of_old_generations(self, tmp_path):
        """Ages read in minutes, hours or days as they grow."""
        clock = FakeClock(time.time() - 3 * 86400 - 7200)
        with warmstart.Store(tmp_path / "s", sync=False, clock=clock) as store:
            for step in (0, 3 * 86400 - 5 * 3600, 3 * 3600 - 120):
                clock.advance(step)
                store.save(f"ns{step}", {"records": (RECORDS, make_records(1))})
        rows = [line.split() for line in run("ls", tmp_path / "s").stdout.splitlines()[1:]]
        ages = {row[0]: row[4] for row in rows}
        assert ages == {"ns0": "3d02h", "ns241200": "7h00m", "ns10680": "4h02m"}

    def test_empty_store(self, tmp_path):
        """An empty store lists nothing and succeeds."""
        warmstart.Store(tmp_path / "s").close()
        assert run("ls", tmp_path / "s").stdout.startswith("no namespaces")
        assert run_json("ls", tmp_path / "s")["namespaces"] == []

    def test_missing_store_is_one_line_error(self, tmp_path):
        """A path that holds no store is a one-line error with exit code 2."""
        line = assert_error(run("ls", tmp_path / "nope"))
        assert "no data.mdb" in line
        assert not (tmp_path / "nope").exists()


class TestInspect:
    def test_json_manifest_metadata_and_schema(self, populated):
        """`inspect --json` shows metadata and each section's contract and writer schema."""
        path, _ = populated
        data = run_json("inspect", path, "svc")
        assert (data["generation"], data["head"], data["kind"], data["parent"]) == (
            2,
            True,
            "delta",
            1,
        )
        assert data["watermark"] == {"lsn": 42}
        assert data["library_version"] == warmstart.__version__
        assert data["host"]
        assert data["pid"] == os.getpid()
        (section,) = data["sections"]
        assert (section["contract"], section["version"], section["key"]) == ("record", 1, "str")
        assert section["fields"][:2] == [
            {"name": "id", "type": "int", "required": True},
            {"name": "name", "type": "str", "required": True},
        ]
        assert section["fields"][3] == {"name": "tags", "type": "list[int]", "required": True}
        assert (section["entries"], section["delta_chunks"]) == (3000, 1)
        assert "first_entries" not in section

    def test_first_entries_replay_deltas_without_the_contract(self, populated):
        """`--entries K` decodes the replayed section untyped, in restore order."""
        path, held = populated
        expected = [
            {"key": k, "value": msgspec.to_builtins(v)} for k, v in list(held["svc"].items())
        ]
        data = run_json("inspect", path, "svc", "--entries", 3)
        assert data["sections"][0]["first_entries"] == expected[:3]
        everything = run_json("inspect", path, "svc", "--entries", 5000)
        assert everything["sections"][0]["first_entries"] == expected
        assert expected[-1]["key"] == "new"

    @pytest.mark.parametrize(
        "payload",
        [
            [1, ["a", "b"], [{}, {}], [], [1.0]],  # one expiry for two keys (seen fuzzing)
            [1, ["a"], [{}], [], [1.0, 2.0]],
            [1, ["a", "b"], [{}], [], []],
        ],
    )
    def test_a_payload_whose_lists_disagree_is_refused(self, payload: list[Any]) -> None:
        """Untyped reads check what a typed read checks: an IntegrityError, not an IndexError."""
        from warmstart.cli._raw_entries import _check_payload

        with pytest.raises(warmstart.IntegrityError, match="Expected a chunk payload"):
            _check_payload(payload, "abc")
        assert _check_payload([1, ["a"], [{}], [], [1.0]], "abc")[1] == ["a"]

    def test_older_generation_and_section_filter(self, populated):
        """`--generation` and `--section` pick what is shown."""
        path, _ = populated
        old = run_json("inspect", path, "svc", "--generation", 1, "--entries", 1)
        assert (old["generation"], old["head"], old["watermark"]) == (1, False, {"lsn": 41})
        assert old["sections"][0]["first_entries"][0]["key"] == "k0"
        other = run_json("inspect", path, "other/ns", "--section", "b")
        assert [s["name"] for s in other["sections"]] == ["b"]
        assert other["tags"] == {"release": "r7"}

    def test_human_output(self, populated):
        """The human view names the contract, fields and first entries."""
        path, _ = populated
        proc = run("inspect", path, "svc", "--entries", 2)
        assert proc.returncode == 0, proc.stderr
        assert "generation  2 (head)" in proc.stdout
        assert "contract  record v1 (key str)" in proc.stdout
        assert re.search(r"\n  tags +list\[int\] +required\n", proc.stdout)
        assert '{"key":"k2","value":{"id":2,' in proc.stdout

    def test_value_families_are_shown(self, tmp_path):
        """A whole-value section shows its type; a NamedTuple section its family and fields."""
        from typing import NamedTuple

        class Pair(NamedTuple):
            a: int
            b: str = ""

        path = tmp_path / "s"
        with warmstart.Store(path) as store:
            store.save(
                "vals",
                {
                    "scores": (warmstart.Contract("scores", list[int]), {"a": [1, 2]}),
                    "pairs": (warmstart.Contract("pairs", Pair), {"p": Pair(1)}),
                },
            )
        proc = run("inspect", path, "vals")
        assert proc.returncode == 0, proc.stderr
        assert "  values    list[int]\n" in proc.stdout
        assert "  values    namedtuple\n" in proc.stdout
        data = run_json("inspect", path, "vals")
        kinds = {s["name"]: (s["values"], s["value_type"]) for s in data["sections"]}
        assert kinds == {"scores": ("value", "list[int]"), "pairs": ("namedtuple", "")}

    def test_tuple_keys_expiries_and_deprecated_fields(self, tmp_path):
        """Tuple keys, TTL expiries and deprecated fields show up as plain data."""
        import cachetools

        ttl = cachetools.TTLCache(maxsize=10, ttl=3600)
        ttl["a"] = Record(1, "a", 0.0, [], True, "x")
        pairs = warmstart.TrackedDict(
            {(i, "x"): Record(i, "p", 0.0, [], True, "y") for i in range(4)}
        )
        by_pair = warmstart.Contract("pair", Record, key=tuple[int, str], deprecated=("kind",))
        with warmstart.Store(tmp_path / "s", sync=False) as store:
            sections = {"ttl": (RECORDS, ttl), "pairs": (by_pair, pairs)}
            store.save("svc", sections)
            del pairs[(0, "x")]
            pairs[(1, "x")] = Record(11, "changed", 0.0, [], False, "y")
            store.save("svc", sections)
        data = run_json("inspect", tmp_path / "s", "svc", "--entries", 10)
        ttl_section, pair_section = data["sections"]
        assert ttl_section["first_entries"][0]["expires"] > 0
        assert [e["key"] for e in pair_section["first_entries"]] == [[2, "x"], [3, "x"], [1, "x"]]
        assert pair_section["first_entries"][-1]["value"]["id"] == 11
        assert pair_section["deprecated"] == ["kind"]
        assert "deprecated  kind" in run("inspect", tmp_path / "s", "svc").stdout

    def test_errors(self, populated):
        """Unknown sections, generations and a missing namespace argument are one-line errors."""
        path, _ = populated
        assert "section 'nope'" in assert_error(run("inspect", path, "svc", "--section", "nope"))
        assert "generation 9" in assert_error(run("inspect", path, "svc", "--generation", 9))
        line = assert_error(run("inspect", path))
        assert "'other/ns', 'svc'" in line
        assert_error(run("inspect", path, "svc", "--entries", -1))


def damage_chunk(path: Path) -> str:
    """Overwrite one chunk's bytes in place, through LMDB itself; return its digest."""
    env = lmdb.open(str(path), max_dbs=4)
    try:
        chunks = env.open_db(b"chunks")
        with env.begin(write=True, db=chunks) as txn:
            key, frame = next(iter(txn.cursor()))
            damaged = bytearray(frame)
            damaged[-1] ^= 0xFF
            txn.put(key, bytes(damaged))
    finally:
        env.close()
    return bytes(key[4:]).hex()


class TestVerify:
    def test_clean_store(self, populated):
        """A healthy store verifies with exit code 0."""
        path, _ = populated
        proc = run("verify", path)
        assert proc.returncode == 0
        assert proc.stdout.startswith("ok: 2 namespaces, 3 generations")
        assert run_json("verify", path)["ok"] is True

    def test_corrupt_store(self, populated):
        """A damaged chunk makes verify exit 1 with a summary naming it."""
        path, _ = populated
        digest = damage_chunk(path)
        proc = run("verify", path)
        assert proc.returncode == 1
        assert digest in proc.stdout
        assert "FAILED: 1 problem found" in proc.stdout
        data = json.loads(run("verify", path, "--json").stdout)
        assert data["ok"] is False
        assert data["problems"][0]["chunk"] == digest

    def test_empty_secret_file_is_a_usage_error(self, populated, tmp_path):
        """An empty secret file is refused rather than taken for no secret."""
        path, _ = populated
        (tmp_path / "empty").write_bytes(b"\n")
        line = assert_error(run("verify", path, "--secret-file", tmp_path / "empty"))
        assert "the file is empty" in line

    def test_keyed_store_needs_its_secret(self, tmp_path):
        """A keyed store verifies with its secret and fails without it."""
        fill(tmp_path / "s", secret=b"k3y")
        (tmp_path / "secret").write_bytes(b"k3y\n")
        assert run("verify", tmp_path / "s", "--secret-file", tmp_path / "secret").returncode == 0
        assert (
            run("verify", tmp_path / "s", env={**os.environ, "WARMSTART_SECRET": "k3y"}).returncode
            == 0
        )
        assert run("verify", tmp_path / "s").returncode == 1


CONTRACTS = """
import msgspec
import warmstart

class V1(msgspec.Struct):
    symbol: str
    price: float

class V2(msgspec.Struct):
    symbol: str
    price: float
    currency: str = "USD"

class Broken(msgspec.Struct):
    symbol: str
    price: str

OLD = warmstart.Contract("quote", V1, key=str, version=1)
NEW = warmstart.Contract("quote", V2, key=str, version=2, upgraders={1: lambda d: d})
NO_UPGRADER = warmstart.Contract("quote", V2, key=str, version=2)
BREAKING = warmstart.Contract("quote", Broken, key=str, version=1)
RENAMED = warmstart.Contract("price", V1, key=str, version=1)
NOT_A_CONTRACT = 3
"""


class TestCompat:
    @pytest.fixture
    def project(self, tmp_path: Path) -> Path:
        (tmp_path / "contracts_mod.py").write_text(textwrap.dedent(CONTRACTS))
        with warmstart.Store(tmp_path / "store", sync=False) as store:
            old = warmstart.Contract("quote", _V1, key=str, version=1)
            store.save("pricing", {"quotes": (old, {"A": _V1("A", 1.0)})})
        return tmp_path

    def test_compatible_change(self, project):
        """An added optional field with an upgrader is compatible both ways: exit 0."""
        proc = run("compat", "contracts_mod:OLD", "contracts_mod:NEW", cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert "backward (new reads old data): compatible" in proc.stdout
        assert "forward  (old reads new data): compatible" in proc.stdout

    def test_breaking_change_fails(self, project):
        """A changed field type is incompatible: exit 1 with the reason."""
        proc = run("compat", "contracts_mod:OLD", "contracts_mod:BREAKING", cwd=project)
        assert proc.returncode == 1
        # Same version on both sides: the roles are named, and the fix (issue 17).
        assert (
            "field 'price' changed type from float (the writer) to str (the reader)" in proc.stdout
        )
        assert "same version, different schema: bump the version and add an upgrader" in (
            proc.stdout
        )
        data = json.loads(
            run(
                "compat", "contracts_mod:OLD", "contracts_mod:BREAKING", "--json", cwd=project
            ).stdout
        )
        assert (data["backward"], data["forward"], data["ok"]) == (False, False, False)

    def test_missing_upgrader_fails_backward_only(self, project):
        """A new version without an upgrader cannot read old data, as Contract.plan decides."""
        args = ("compat", "contracts_mod:OLD", "contracts_mod:NO_UPGRADER")
        proc = run(*args, cwd=project)
        assert proc.returncode == 1
        assert "no upgrader v1->v2" in proc.stdout
        assert run(*args, "--direction", "forward", cwd=project).returncode == 0
        assert run(*args, "--direction", "backward", cwd=project).returncode == 1

    def test_renamed_contract_is_incompatible(self, project):
        """A contract renamed between versions is incompatible both ways."""
        proc = run("compat", "contracts_mod:OLD", "contracts_mod:RENAMED", cwd=project)
        assert proc.returncode == 1
        assert "contract name changed from 'quote' to 'price'" in proc.stdout

    def test_stored_section_against_contract(self, project):
        """A stored section's writer schema is checked against a contract."""
        stored = f"{project / 'store'}:pricing:quotes"
        data = run_json("compat", stored, "contracts_mod:NEW", cwd=project)
        assert (data["ok"], data["old"]["contract"], data["old"]["version"]) == (True, "quote", 1)
        assert run("compat", stored, "contracts_mod:BREAKING", cwd=project).returncode == 1

    def test_bad_specs_are_usage_errors(self, project):
        """Unresolvable or malformed specs are one-line errors with exit 2."""
        assert "module:attribute" in assert_error(run("compat", "nocolon", "x:y", cwd=project))
        assert "No module named" in assert_error(run("compat", "nomod:X", "x:y", cwd=project))
        assert "got int" in assert_error(
            run("compat", "contracts_mod:NOT_A_CONTRACT", "contracts_mod:NEW", cwd=project)
        )
        assert "attribute 'Nope'" in assert_error(
            run("compat", "contracts_mod:Nope", "contracts_mod:NEW", cwd=project)
        )
        stored = f"{project / 'store'}:pricing:nope"
        assert "section 'nope'" in assert_error(
            run("compat", stored, "contracts_mod:NEW", cwd=project)
        )


class _V1(msgspec.Struct):
    symbol: str
    price: float


def loaded(path: Path, namespace: str = "svc", secret: bytes | None = None) -> Any:
    with warmstart.Store(path, readonly=True, secret=secret) as store, store.load(namespace) as s:
        return s.section("records", RECORDS)


class TestExportImport:
    def test_round_trip(self, populated, tmp_path):
        """`export` then `import` moves a generation; the second import changes nothing."""
        path, held = populated
        proc = run("export", path, "svc", tmp_path / "svc.wsa")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("exported svc generation 2 to ")
        proc = run("import", tmp_path / "copy", tmp_path / "svc.wsa")
        assert proc.returncode == 0, proc.stderr
        assert "as svc generation 2: 3 chunks written" in proc.stdout
        assert loaded(tmp_path / "copy") == held["svc"]
        again = run("import", tmp_path / "copy", tmp_path / "svc.wsa")
        assert "nothing changed" in again.stdout
        data = run_json("import", tmp_path / "copy", tmp_path / "svc.wsa")
        assert (data["status"], data["chunks_written"], data["renumbered"]) == ("present", 0, False)

    def test_incremental(self, populated, tmp_path):
        """`--since` leaves out what the older generation has; a target without it is refused."""
        path, held = populated
        base = run_json("export", path, "svc", tmp_path / "g1.wsa", "--generation", 1)
        assert base["generation"] == 1
        inc = run_json("export", path, "svc", tmp_path / "inc.wsa", "--since", 1)
        assert (inc["chunks"], inc["omitted_chunks"]) == (1, 2)
        line = assert_error(run("import", tmp_path / "copy", tmp_path / "inc.wsa"))
        assert "missing in namespace 'svc'" in line
        assert run("import", tmp_path / "copy", tmp_path / "g1.wsa").returncode == 0
        assert run("import", tmp_path / "copy", tmp_path / "inc.wsa").returncode == 0
        assert loaded(tmp_path / "copy") == held["svc"]

    def test_damaged_archive_leaves_target_unchanged(self, populated, tmp_path):
        """A truncated or bit-flipped archive is refused with exit 2; the target is unchanged."""
        path, _ = populated
        assert run("export", path, "svc", tmp_path / "svc.wsa").returncode == 0
        assert run("export", path, "other/ns", tmp_path / "other.wsa").returncode == 0
        assert run("import", tmp_path / "copy", tmp_path / "other.wsa").returncode == 0
        before = run_json("ls", tmp_path / "copy")
        data = (tmp_path / "svc.wsa").read_bytes()
        (tmp_path / "cut.wsa").write_bytes(data[: len(data) // 2])
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0x10
        (tmp_path / "flip.wsa").write_bytes(bytes(flipped))
        assert "truncated" in assert_error(run("import", tmp_path / "copy", tmp_path / "cut.wsa"))
        assert "damaged" in assert_error(run("import", tmp_path / "copy", tmp_path / "flip.wsa"))
        after = run_json("ls", tmp_path / "copy")
        for listing in (before, after):
            for ns in listing["namespaces"]:
                for g in ns["generations"]:
                    g.pop("age")
        assert after == before

    def test_keyed_stores_need_the_secret(self, tmp_path):
        """Archives of a keyed store import only into a store opened with the same secret."""
        held = fill(tmp_path / "s", secret=b"k3y")
        key = tmp_path / "key"
        key.write_bytes(b"k3y")
        assert (
            run(
                "export", tmp_path / "s", "svc", tmp_path / "a.wsa", "--secret-file", key
            ).returncode
            == 0
        )
        assert "secret" in assert_error(run("import", tmp_path / "plain", tmp_path / "a.wsa"))
        proc = run("import", tmp_path / "keyed", tmp_path / "a.wsa", "--secret-file", key)
        assert proc.returncode == 0, proc.stderr
        assert loaded(tmp_path / "keyed", secret=b"k3y") == held["svc"]
        (tmp_path / "wrong").write_bytes(b"other")
        proc = run(
            "import", tmp_path / "k2", tmp_path / "a.wsa", "--secret-file", tmp_path / "wrong"
        )
        assert "MAC" in assert_error(proc)

    def test_progress_with_eta_on_a_terminal(self, populated, tmp_path):
        """On a terminal, export and import draw progress with an ETA on stderr."""
        path, _ = populated
        code, out, terminal = run_on_pty("export", path, "svc", tmp_path / "svc.wsa")
        assert code == 0
        assert "exporting" in terminal
        assert "ETA" in terminal
        assert "exporting" not in out
        code, _, terminal = run_on_pty("import", tmp_path / "copy", tmp_path / "svc.wsa")
        assert code == 0
        assert "importing" in terminal
        assert "100%" in terminal

    def test_no_progress_when_not_a_terminal(self, populated, tmp_path):
        """Without a terminal, stderr stays empty."""
        path, _ = populated
        proc = run("export", path, "svc", tmp_path / "svc.wsa")
        assert proc.stderr == ""


class TestMaintenance:
    def test_gc_frees_orphans_of_an_interrupted_import(self, populated, tmp_path, monkeypatch):
        """Chunks an abandoned import left behind are reported by stats and freed by gc."""
        path, _ = populated
        other = tmp_path / "other"
        with warmstart.Store(other, sync=False) as store:
            store.save("svc", {"records": (RECORDS, make_records(20_000, salt=9))})
            transfer.export(store, "svc", tmp_path / "a.wsa")
        monkeypatch.setattr(transfer, "_BATCH_BYTES", 1)

        def stop(p: transfer.Progress) -> None:
            if p.chunks_done == 2:
                raise KeyboardInterrupt

        with warmstart.Store(path, sync=False) as store, pytest.raises(KeyboardInterrupt):
            transfer.import_archive(store, tmp_path / "a.wsa", progress=stop)
        assert run_json("stats", path)["orphaned_chunks"] == 2
        proc = run("gc", path)
        assert (proc.returncode, proc.stdout.strip()) == (0, f"freed 2 chunks in {path}")
        assert run_json("gc", path)["freed_chunks"] == 0

    def test_drop_refuses_without_a_terminal(self, populated):
        """`drop` without --yes and without a terminal refuses and keeps the namespace."""
        path, _ = populated
        assert "--yes" in assert_error(run("drop", path, "svc"))
        assert len(run_json("ls", path)["namespaces"]) == 2
        proc = run("drop", path, "svc", "--yes")
        assert (proc.returncode, proc.stdout.strip()) == (0, f"dropped namespace svc from {path}")
        assert run_json("drop", path, "other/ns", "--yes")["dropped"] == "other/ns"
        assert run_json("ls", path)["namespaces"] == []
        assert "namespace 'svc'" in assert_error(run("drop", path, "svc", "--yes"))

    def test_write_commands_do_not_create_stores(self, tmp_path):
        """`gc` and `drop` on a path without a store fail instead of creating one."""
        assert "no data.mdb" in assert_error(run("gc", tmp_path / "typo"))
        assert "no data.mdb" in assert_error(run("drop", tmp_path / "typo", "svc", "--yes"))
        assert not (tmp_path / "typo").exists()

    def test_drop_asks_on_a_terminal(self, populated):
        """On a terminal, `drop` asks; only yes drops."""
        path, _ = populated
        code, _, terminal = run_on_pty("drop", path, "svc", answer="n\n")
        assert code == 1
        assert "drop namespace 'svc' (2 generations)" in terminal
        assert "not dropped" in terminal
        assert len(run_json("ls", path)["namespaces"]) == 2
        code, out, _ = run_on_pty("drop", path, "svc", answer="y\n")
        assert code == 0
        assert out.startswith("dropped namespace svc")

    def test_stats(self, populated):
        """`stats` reports tables, namespaces and orphans."""
        path, _ = populated
        data = run_json("stats", path)
        assert data["tables"]["heads"]["entries"] == 2
        assert data["tables"]["manifests"]["entries"] == 3
        assert data["orphaned_chunks"] == 0
        svc = next(n for n in data["namespaces"] if n["namespace"] == "svc")
        assert (svc["generations"], svc["head"], svc["entries"], svc["chunks"]) == (2, 2, 3000, 3)
        proc = run("stats", path)
        assert "TABLE" in proc.stdout
        assert "orphaned      0 chunks" in proc.stdout


RO_MOUNT = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'


def _can_mount_read_only(probe: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", RO_MOUNT, str(probe), "true"],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any], list[str]]]:
    """A store on a read-only volume, and the command prefix that sees it read-only.

    As root, permissions do not bind: the commands then run in a private mount
    namespace where the store directory is bind-mounted read-only (EROFS, like
    a read-only volume). Otherwise the directory and files are made read-only.
    """
    path = tmp_path / "store"
    held = fill(path)
    (tmp_path / "out").mkdir()
    if _can_mount_read_only(path):
        yield path, held, ["unshare", "-m", "sh", "-c", RO_MOUNT, str(path)]
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without unshare/mount: cannot make a store read-only")
    for f in path.iterdir():
        f.chmod(0o444)
    path.chmod(0o555)
    try:
        yield path, held, []
    finally:
        path.chmod(0o755)


class TestReadOnlyStore:
    def test_read_commands_work_and_change_nothing(self, read_only_store):
        """Every read command works on a read-only store and leaves its files byte-identical."""
        path, held, prefix = read_only_store
        before = files_of(path)
        for args in (("ls",), ("inspect", "--entries", "2"), ("verify",), ("stats",)):
            command, *rest = args
            extra = ["svc"] if command == "inspect" else []
            proc = run(command, path, *extra, *rest, prefix=prefix)
            assert proc.returncode == 0, (args, proc.stderr)
        archive = path.parent / "out" / "svc.wsa"
        proc = run("export", path, "svc", archive, prefix=prefix)
        assert proc.returncode == 0, proc.stderr
        assert files_of(path) == before
        with warmstart.Store(path.parent / "copy", sync=False) as copy:
            transfer.import_archive(copy, archive)
            with copy.load("svc") as snapshot:
                assert snapshot.section("records", RECORDS) == held["svc"]

    def test_write_commands_fail_cleanly(self, read_only_store):
        """Writing commands on a read-only store are one-line errors, and change nothing."""
        path, _, prefix = read_only_store
        before = files_of(path)
        assert "read-only" in assert_error(run("gc", path, prefix=prefix)).lower()
        assert "read-only" in assert_error(run("drop", path, "svc", "--yes", prefix=prefix)).lower()
        archive = path.parent / "out" / "a.wsa"
        assert run("export", path, "other/ns", archive, prefix=prefix).returncode == 0
        assert "read-only" in assert_error(run("import", path, archive, prefix=prefix)).lower()
        assert files_of(path) == before


class TestErrors:
    def test_debug_shows_the_traceback(self, tmp_path):
        """--debug trades the one-line error for the traceback."""
        proc = run("--debug", "ls", tmp_path / "nope")
        assert proc.returncode == 1
        assert "Traceback" in proc.stderr
        assert "StoreError" in proc.stderr
        assert "Traceback" in run("ls", tmp_path / "nope", "--debug").stderr

    def test_usage_errors_exit_2(self):
        """Unknown commands and missing arguments exit 2 with argparse's usage."""
        assert "invalid choice" in assert_error(run("frobnicate"))
        line = assert_error(run("export", "x"))
        assert line.startswith("warmstart export: error: the following arguments are required")
        assert line.endswith("(see warmstart export --help)")

    def test_help_and_version(self):
        """--help lists commands and exit codes; python -m warmstart is the same command."""
        proc = run("--help")
        assert proc.returncode == 0
        for command in (
            "ls",
            "inspect",
            "verify",
            "compat",
            "export",
            "import",
            "gc",
            "drop",
            "stats",
        ):
            assert command in proc.stdout
        assert "Exit codes: 0 ok, 1 problem found" in proc.stdout
        module = subprocess.run(
            [sys.executable, "-m", "warmstart", "--version"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert module.stdout.strip() == f"warmstart {warmstart.__version__}"

    def test_closed_pipe_is_not_an_error(self, populated):
        """A reader that stops early (`| head -1`) gets no traceback."""
        path, _ = populated
        proc = subprocess.Popen(
            [WARMSTART, "inspect", str(path), "svc", "--entries", "3000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
        assert proc.stderr.read() == b""
        proc.stderr.close()

    def test_main_returns_codes_in_process(self, tmp_path, capsys):
        """main() returns the exit code instead of exiting."""
        assert cli.main(["ls", str(tmp_path / "nope")]) == 2
        assert capsys.readouterr().err.startswith("warmstart: error: Expected a store")
        assert dir(cli) == ["main"]
