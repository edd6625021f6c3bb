"""Conformance before exposure (issue 18): ``warmstart.conformance.check`` and ``warmstart check``.

Every check runs on a real store (and a real export archive), and must leave
the store untouched.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart
from warmstart.cli import main
from warmstart.conformance import check
from warmstart.errors import CheckpointNotFoundError, ContractError
from warmstart.transfer import export

NS = "catalog"


class ItemV1(msgspec.Struct):
    value: str


class ItemV2(msgspec.Struct):
    text: str
    note: str = ""


class Other(msgspec.Struct):
    n: int


def up(old: dict[str, Any]) -> dict[str, Any]:
    return {"text": old["value"], "note": "upgraded"}


def picky_up(old: dict[str, Any]) -> dict[str, Any]:
    if old["value"].startswith("bad"):
        msg = f"cannot upgrade {old['value']!r}"
        raise ValueError(msg)
    return up(old)


V1 = warmstart.Contract("item", ItemV1, key=str)
V2 = warmstart.Contract("item", ItemV2, key=str, version=2, upgraders={1: up})
OTHER = warmstart.Contract("other", Other, key=str)


def auto(downgrade: Any = lambda item: ItemV1(item.text)) -> warmstart.Contract[Any]:
    return warmstart.Contract(
        "item",
        ItemV2,
        key=str,
        version=2,
        upgraders={1: up},
        write_version="auto",
        write_type=ItemV1,
        downgrader=downgrade,
    )


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """A store holding 100 v1 items (three of them 'bad...') and an unrelated section."""
    path = tmp_path / "store"
    items = {f"k{i}": ItemV1(f"bad{i}" if i < 3 else f"v{i}") for i in range(100)}
    with warmstart.Store(path) as store:
        store.save(NS, {"Catalog.items": (V1, items), "Catalog.other": (OTHER, {"x": Other(1)})})
    return path


def fingerprint(path: Path) -> tuple[str, float]:
    data = path / "data.mdb"
    return hashlib.sha256(data.read_bytes()).hexdigest(), data.stat().st_mtime


class TestCheck:
    def test_an_upgrade_that_reads_everything(self, stored: Path) -> None:
        """Every entry is read through the upgrader; the renamed field breaks a rollback."""
        before = fingerprint(stored)
        report = check(stored, NS, [V2])
        assert fingerprint(stored) == before  # nothing written
        assert report.ok
        assert not report.rollback_ok
        items = next(s for s in report.sections if s.section == "Catalog.items")
        assert (items.status, items.entries, items.readable, items.upgraded) == (
            "upgraded",
            100,
            100,
            100,
        )
        assert (items.stored_version, items.reader_version, items.write_version) == (1, 2, 2)
        assert items.rollback is False
        assert "field 'value' is required by v1" in items.rollback_reasons[0]
        other = next(s for s in report.sections if s.section == "Catalog.other")
        assert other.status == "unchecked"

    def test_a_staged_release_keeps_rollbacks_readable_until_it_switches(
        self, stored: Path
    ) -> None:
        items = check(stored, NS, [auto()]).sections[0]
        assert items.write_version == 1
        assert (items.rollback, items.rollback_after_switch) == (True, False)

    def test_entries_an_upgrader_refuses_are_dropped_with_reasons(self, stored: Path) -> None:
        picky = warmstart.Contract("item", ItemV2, key=str, version=2, upgraders={1: picky_up})
        report = check(stored, NS, [picky])
        items = report.sections[0]
        assert not report.ok
        assert (items.status, items.readable, items.dropped) == ("dropped", 97, 3)
        assert "cannot upgrade 'bad0'" in items.reasons[0]

    def test_a_missing_upgrader_makes_the_section_unreadable(self, stored: Path) -> None:
        """Without a v1 -> v2 upgrader the new release would start this section cold."""
        bare = warmstart.Contract("item", ItemV2, key=str, version=2)
        report = check(stored, NS, [bare, OTHER])
        items = report.sections[0]
        assert not report.ok
        assert items.status == "unreadable"
        assert "missing v1->v2" in items.reasons[0]
        assert report.sections[1].status == "ok"

    def test_entries_the_new_release_cannot_write_back(self, stored: Path) -> None:
        """A downgrader that fails for some values: counted, not silently lost."""

        def downgrade(item: ItemV2) -> ItemV1:
            if item.text.startswith("v1"):
                msg = "no"
                raise ValueError(msg)
            return ItemV1(item.text)

        report = check(stored, NS, [auto(downgrade)])
        items = report.sections[0]
        assert not report.ok
        assert items.unwritable == 10  # v10..v19 (k1 holds "bad1")
        assert any("cannot write" in r for r in items.reasons)

    def test_an_export_archive_is_checked_through_a_temporary_store(
        self, stored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        archive = tmp_path / "prod.wsa"
        with warmstart.Store(stored, readonly=True) as store:
            export(store, NS, archive)
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        monkeypatch.setattr(tempfile, "tempdir", str(scratch))
        report = check(archive, NS, [V2])
        assert report.source == str(archive)
        assert report.sections[0].readable == 100
        assert list(scratch.iterdir()) == []  # the temporary store is gone

    def test_contracts_of_one_name_need_a_section_map(self, stored: Path) -> None:
        with pytest.raises(ContractError, match="one contract per name"):
            check(stored, NS, [V1, V2])
        report = check(stored, NS, sections={"Catalog.items": V1})
        assert report.sections[0].status == "ok"
        assert report.sections[1].status == "unchecked"

    def test_unknown_namespace_and_unused_contracts(self, stored: Path) -> None:
        with pytest.raises(CheckpointNotFoundError):
            check(stored, "nope", [V2])
        unused = warmstart.Contract("nobody", Other)
        assert check(stored, NS, [V2, unused]).unused == ("nobody",)


CONTRACTS = textwrap.dedent(
    """
    import msgspec, warmstart

    class ItemV1(msgspec.Struct):
        value: str

    class ItemV2(msgspec.Struct):
        text: str
        note: str = ""

    def up(old):
        return {"text": old["value"], "note": "upgraded"}

    V2 = warmstart.Contract("item", ItemV2, key=str, version=2, upgraders={1: up})
    BARE = warmstart.Contract("item", ItemV2, key=str, version=2)
    COMPATIBLE = warmstart.Contract(
        "item", ItemV1, key=str, version=2, upgraders={1: dict}
    )
    SECTIONS = {"Catalog.items": V2}

    @warmstart.warm(items=V2)
    class Catalog:
        def __init__(self):
            self.items = {}
    """
)


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of contracts importable from the working directory (a fresh name)."""
    name = f"contracts_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(CONTRACTS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return name


class TestCommand:
    def test_ok_exits_0(
        self, stored: Path, module: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["check", str(stored), NS, "--contracts", f"{module}:V2"]) == 0
        out = capsys.readouterr().out
        assert "Catalog.items" in out
        assert "upgraded" in out
        assert "ok: 0 sections would drop entries, 0 would start cold" in out

    def test_unreadable_exits_1(
        self, stored: Path, module: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["check", str(stored), NS, "--contracts", f"{module}:BARE"]) == 1
        out = capsys.readouterr().out
        assert "UNREADABLE" in out
        assert out.rstrip().splitlines()[-1].startswith("FAIL: 0 sections would drop entries, 1")

    def test_require_rollback(
        self, stored: Path, module: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """v2 renamed a field: fine to deploy, but a rollback could not read it."""
        args = ["check", str(stored), NS, "--contracts", f"{module}:V2", "--require-rollback"]
        assert main(args) == 1
        assert "rollback: writing v2: field 'value' is required by v1" in capsys.readouterr().out
        args[4] = f"{module}:COMPATIBLE"
        assert main(args) == 0

    def test_json_warm_class_and_section_map(
        self, stored: Path, module: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for spec in (f"{module}:Catalog", f"{module}:SECTIONS"):
            assert main(["check", str(stored), NS, "--contracts", spec, "--json"]) == 0
            data = json.loads(capsys.readouterr().out)
            assert (data["ok"], data["exit"]) == (True, 0)
            items = next(s for s in data["sections"] if s["section"] == "Catalog.items")
            assert (items["status"], items["upgraded"]) == ("upgraded", 100)

    def test_an_archive_and_bad_arguments(
        self, stored: Path, module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        archive = tmp_path / "prod.wsa"
        with warmstart.Store(stored, readonly=True) as store:
            export(store, NS, archive)
        assert main(["check", str(archive), NS, "--contracts", f"{module}:V2"]) == 0
        assert main(["check", str(stored), NS, "--contracts", f"{module}:nope"]) == 2
        assert "Expected attribute 'nope'" in capsys.readouterr().err
        assert main(["check", str(tmp_path / "missing"), NS, "--contracts", f"{module}:V2"]) == 2
