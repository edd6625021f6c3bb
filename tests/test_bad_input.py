"""Bad input at the public API: a clear error, and nothing stored lost.

Each case failed before its fix (found in review): silent data loss (keys the
contract cannot read, non-str section names, a lock failing on release),
internal errors leaking (AttributeError, struct.error), or a mistake surfacing
only at the first save or as a silent cold start.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path
from typing import Any

import msgspec
import pytest

import warmstart
from warmstart.cli import main as cli_main


class Row(msgspec.Struct):
    n: int


ROWS = warmstart.Contract("row", Row, key=str)


def _load(store: warmstart.Store, namespace: str, section: str) -> dict[Any, Row]:
    with store.load(namespace) as snapshot:
        return snapshot.section(section, ROWS)


# -- Store.save: keys and values the contract cannot hold -------------------


@pytest.mark.parametrize(
    "entries",
    [
        {1: Row(1), 2: Row(2)},  # int keys, str contract
        {"a": Row(1), 2: Row(2)},  # mixed keys
        {float("nan"): Row(1)},  # NaN key
    ],
    ids=["int-keys", "mixed-keys", "nan-key"],
)
def test_save_refuses_keys_of_wrong_type_instead_of_committing_an_empty_head(
    store_path: Path, entries: dict[Any, Row]
) -> None:
    with warmstart.Store(store_path, sync=False, keep=2) as store:
        store.save("svc", {"rows": (ROWS, {"good": Row(0)})})
        with pytest.raises(warmstart.EncodeError):
            store.save("svc", {"rows": (ROWS, entries)})
        # Whatever happened, the good generation must still be what loads.
        assert _load(store, "svc", "rows") == {"good": Row(0)}


# -- Store.save: section names and section specs ----------------------------


@pytest.mark.parametrize("name", [5, b"rows", ("a", 1)], ids=["int", "bytes", "tuple"])
def test_save_refuses_non_str_section_name_instead_of_writing_unreadable_generation(
    store_path: Path, name: Any
) -> None:
    with warmstart.Store(store_path, sync=False, keep=2) as store:
        store.save("svc", {"rows": (ROWS, {"good": Row(0)})})
        for _ in range(2):
            with pytest.raises((TypeError, warmstart.WarmstartError)):
                store.save("svc", {name: (ROWS, {"k": Row(1)})})
        # Retention must not have expired the last good generation.
        assert _load(store, "svc", "rows") == {"good": Row(0)}
        assert store.verify().ok


@pytest.mark.parametrize(
    "sections",
    [None, [("rows", (ROWS, {}))], {"rows": (ROWS, None)}, {"rows": (ROWS, [1, 2])}],
    ids=["none", "list", "mapping-none", "mapping-list"],
)
def test_save_with_malformed_sections_raises_clear_error_not_attribute_error(
    store_path: Path, sections: Any
) -> None:
    with warmstart.Store(store_path, sync=False) as store:
        with pytest.raises((TypeError, warmstart.WarmstartError)) as info:
            store.save("svc", sections)
        assert not isinstance(info.value, AttributeError)


def test_save_refuses_unknown_mode(store_path: Path) -> None:
    with warmstart.Store(store_path, sync=False) as store, pytest.raises(ValueError, match="mode"):
        store.save("svc", {"rows": (ROWS, {"k": Row(1)})}, mode="detla")  # type: ignore[arg-type]


def test_save_with_tags_as_list_raises_encode_error(store_path: Path) -> None:
    with warmstart.Store(store_path, sync=False) as store, pytest.raises(warmstart.EncodeError):
        store.save("svc", {}, tags=[("a", "b")])  # type: ignore[arg-type]


class _ExitRaises:
    """A lock whose release fails once."""

    def __enter__(self) -> _ExitRaises:
        return self

    def __exit__(self, *exc: object) -> None:
        msg = "lock release failed"
        raise RuntimeError(msg)


def test_lock_failing_on_exit_during_delta_save_loses_no_tracked_change(
    store_path: Path,
) -> None:
    with warmstart.Store(store_path, sync=False) as store:
        rows = warmstart.TrackedDict({"a": Row(1)})
        store.save("svc", {"rows": (ROWS, rows)})
        rows["b"] = Row(2)
        with pytest.raises(RuntimeError):
            store.save("svc", {"rows": (ROWS, rows, _ExitRaises())})
        store.save("svc", {"rows": (ROWS, rows)})
        assert _load(store, "svc", "rows") == {"a": Row(1), "b": Row(2)}


# -- generation numbers -----------------------------------------------------


@pytest.mark.parametrize("generation", [-1, 1 << 70, "1"], ids=["negative", "huge", "str"])
def test_manifest_with_bad_generation_does_not_leak_struct_error(
    store_path: Path, generation: Any
) -> None:
    with warmstart.Store(store_path, sync=False) as store:
        store.save("svc", {"rows": (ROWS, {"k": Row(1)})})
        with pytest.raises((warmstart.CheckpointNotFoundError, ValueError, TypeError)) as info:
            store.manifest("svc", generation)
        assert not isinstance(info.value, struct.error)


@pytest.mark.parametrize("generation", [-1, "1"], ids=["negative", "str"])
def test_quarantine_with_bad_generation_does_not_leak_struct_error(
    store_path: Path, generation: Any
) -> None:
    with warmstart.Store(store_path, sync=False) as store:
        store.save("svc", {"rows": (ROWS, {"k": Row(1)})})
        with pytest.raises((ValueError, TypeError, warmstart.WarmstartError)) as info:
            store.quarantine("svc", generation, "bad")
        assert not isinstance(info.value, struct.error)


def test_quarantine_with_none_reason_raises_clear_error(store_path: Path) -> None:
    with warmstart.Store(store_path, sync=False) as store:
        store.save("svc", {"rows": (ROWS, {"k": Row(1)})})
        with pytest.raises((TypeError, warmstart.WarmstartError)) as info:
            store.quarantine("svc", 1, None)  # type: ignore[arg-type]
        assert not isinstance(info.value, AttributeError)


def test_export_with_negative_generation_does_not_leak_struct_error(
    store_path: Path, tmp_path: Path
) -> None:
    with warmstart.Store(store_path, sync=False) as store:
        store.save("svc", {"rows": (ROWS, {"k": Row(1)})})
        with pytest.raises(Exception) as info:
            warmstart.transfer.export(store, "svc", tmp_path / "out.wsa", generation=-1)
        assert isinstance(info.value, (warmstart.WarmstartError, ValueError))
        assert not isinstance(info.value, struct.error)


def test_cli_inspect_negative_generation_gives_clear_message(
    store_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with warmstart.Store(store_path, sync=False) as store:
        store.save("svc", {"rows": (ROWS, {"k": Row(1)})})
    assert cli_main(["inspect", str(store_path), "svc", "--generation", "-1"]) == 2
    err = capsys.readouterr().err
    assert "int too large to convert" not in err
    assert "generation" in err


# -- Store(...) arguments: refused at open, not at the first save ------------


@pytest.mark.parametrize(
    "options",
    [
        {"keep": 2.5},
        {"compression_level": 99},
        {"secret": "not-bytes"},
        {"compaction": 5},
    ],
    ids=["keep-float", "compression-99", "secret-str", "compaction-int"],
)
def test_store_refuses_bad_options_at_open(store_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError, warmstart.WarmstartError)):
        warmstart.Store(store_path, sync=False, **options).close()


@pytest.mark.parametrize("size", [-1, 1 << 70], ids=["negative", "huge"])
def test_store_negative_or_huge_max_map_size_is_a_clear_error(store_path: Path, size: int) -> None:
    with pytest.raises((ValueError, warmstart.StoreError)) as info:
        warmstart.Store(store_path, sync=False, max_map_size=size).close()
    assert "max_map_size" in str(info.value)


# -- Contract(...) and compatibility() ---------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"version": 2, "upgraders": 5},
        {"version": 2, "upgraders": [1]},
        {"deprecated": 5},
        {"version": 1 << 70},
    ],
    ids=["upgraders-int", "upgraders-list", "deprecated-int", "version-over-u64"],
)
def test_contract_definition_errors_are_contract_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(warmstart.ContractError):
        warmstart.Contract("row", Row, **kwargs)


def test_compatibility_given_something_else_raises_clear_error() -> None:
    """compatibility() takes contracts or schemas (issue 17); anything else is a TypeError."""
    v2 = warmstart.Contract("row", Row, version=2, upgraders={1: lambda old: old})
    assert warmstart.compatibility(ROWS, v2).ok
    with pytest.raises(TypeError, match="Contract or a Schema"):
        warmstart.compatibility(ROWS, "row:v2")  # type: ignore[arg-type]


# -- state(), @warm and boot -------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"contract": ROWS, "section": 5},
        {"contract": ROWS, "lock": 5},
        {"keys_only": True, "prefetch": 5},
    ],
    ids=["section-int", "lock-int", "prefetch-not-callable"],
)
def test_state_refuses_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(warmstart.ContractError):
        warmstart.state(**kwargs)


def test_explicit_section_equal_to_default_section_is_refused_not_overwritten(
    store_path: Path,
) -> None:
    def define() -> type:
        @warmstart.warm(a=ROWS, b=warmstart.state(ROWS, section="Svc.a"))
        class Svc:
            def __init__(self) -> None:
                self.a = {"from-a": Row(1)}
                self.b = {"from-b": Row(2)}

        return Svc

    with pytest.raises(warmstart.ContractError, match="distinct section names"):
        define()


def test_lock_attribute_missing_is_refused_at_attach(store_path: Path) -> None:
    @warmstart.warm(cache=warmstart.state(ROWS, lock="cache_lock"))
    class Svc:
        def __init__(self) -> None:
            self.cache = {"k": Row(1)}  # no self.cache_lock

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with warmstart.boot(store_path, namespace="svc", signals=False, strict=True) as boot:
            with pytest.raises(warmstart.ContractError):
                Svc()
            boot.report  # noqa: B018


@pytest.mark.parametrize("namespace", ["", None], ids=["empty", "none"])
def test_boot_refuses_invalid_namespace_up_front(store_path: Path, namespace: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="namespace"):
            warmstart.boot(store_path, namespace=namespace, signals=False)


def test_boot_refuses_unknown_store_option_instead_of_starting_cold(store_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(TypeError, match="kepp"):
            warmstart.boot(store_path, namespace="svc", signals=False, store_options={"kepp": 5})
