"""The ``@warm`` class decorator: section names, instance keys, identity, slots."""

from __future__ import annotations

import inspect
from pathlib import Path

import msgspec
import pytest

import warmstart
from conftest import RECORDS, Record, make_records
from warmstart import ContractError
from warmstart.boot import WarmInfo


class Flag(msgspec.Struct):
    """A single-record section."""

    on: bool = False


FLAGS = warmstart.Contract("flag", Flag)


@warmstart.warm(rows=RECORDS)
class Plain:
    """Holds rows."""

    def __init__(self, size: int = 0, *, label: str = "x") -> None:
        self.rows: dict[str, Record] = {}
        self.size = size
        self.label = label


def boot(path: Path, **options: object) -> warmstart.Boot:
    options.setdefault("signals", False)
    return warmstart.boot(path, namespace="warm", **options)  # type: ignore[arg-type]


def sections_in(path: Path) -> tuple[str, ...]:
    with warmstart.Store(path) as store, store.load("warm") as snapshot:
        return snapshot.sections


class TestSectionNames:
    """Where each attribute's state is stored."""

    def test_default_is_class_dot_attribute(self, store_path: Path) -> None:
        """Without options a section is named ``ClassName.attr``."""
        with boot(store_path):
            Plain().rows["a"] = make_records(1)["k0"]
        assert sections_in(store_path) == ("Plain.rows",)
        assert Plain.warm_info().sections == ("Plain.rows",)  # type: ignore[attr-defined]

    def test_explicit_section(self, store_path: Path) -> None:
        """``state(section=...)`` names the section, and a renamed class still finds it."""

        @warmstart.warm(rows=warmstart.state(RECORDS, section="catalog.rows"))
        class Catalog:
            def __init__(self) -> None:
                self.rows: dict[str, Record] = {}

        with boot(store_path):
            Catalog().rows.update(make_records(3))
        assert sections_in(store_path) == ("catalog.rows",)

        @warmstart.warm(rows=warmstart.state(RECORDS, section="catalog.rows"))
        class RenamedCatalog:
            def __init__(self) -> None:
                self.rows: dict[str, Record] = {}

        with boot(store_path):
            renamed = RenamedCatalog()
        assert renamed.rows == make_records(3)

    def test_keyed_instances_get_their_own_sections(self, store_path: Path) -> None:
        """Instances told apart by ``@warm(key=...)`` restore their own state."""

        @warmstart.warm(key="tenant", rows=RECORDS)
        class Tenant:
            def __init__(self, tenant: str) -> None:
                self.tenant = tenant
                self.rows: dict[str, Record] = {}

        with boot(store_path):
            Tenant("a").rows.update(make_records(2, prefix="a"))
            Tenant("b").rows.update(make_records(3, prefix="b"))
        assert sorted(sections_in(store_path)) == ["Tenant[a].rows", "Tenant[b].rows"]
        with boot(store_path):
            b, a = Tenant("b"), Tenant("a")
        assert a.rows == make_records(2, prefix="a")
        assert b.rows == make_records(3, prefix="b")

    def test_warm_key_attribute_and_key_callable(self, store_path: Path) -> None:
        """A ``warm_key`` attribute, or a key callable, names the instance too."""

        @warmstart.warm(rows=RECORDS)
        class ByAttribute:
            def __init__(self, shard: int) -> None:
                self.warm_key = shard
                self.rows: dict[str, Record] = {}

        @warmstart.warm(key=lambda obj: obj.name.upper(), rows=RECORDS)
        class ByCallable:
            def __init__(self, name: str) -> None:
                self.name = name
                self.rows: dict[str, Record] = {}

        with boot(store_path):
            ByAttribute(1).rows.update(make_records(1))
            ByAttribute(2)
            ByCallable("eu").rows.update(make_records(2))
        assert sorted(sections_in(store_path)) == [
            "ByAttribute[1].rows",
            "ByAttribute[2].rows",
            "ByCallable[EU].rows",
        ]

    def test_explicit_section_with_key(self, store_path: Path) -> None:
        """An explicit section name of a keyed instance carries the key."""

        @warmstart.warm(key="name", rows=warmstart.state(RECORDS, section="rows"))
        class Shard:
            def __init__(self, name: str) -> None:
                self.name = name
                self.rows: dict[str, Record] = {}

        with boot(store_path):
            Shard("s1")
        assert sections_in(store_path) == ("rows[s1]",)

    def test_two_unkeyed_instances_are_told_apart_clearly(
        self, store_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A second captured instance of a class without keys is left alone with a WARNING
        saying how to fix it (a request must never fail on it); attached by hand it is refused."""
        with boot(store_path) as b:
            first = Plain()
            second = Plain()  # not captured: not restored, not saved
            assert len([r for r in caplog.records if "is not captured" in r.getMessage()]) == 1
            Plain()
            assert len([r for r in caplog.records if "is not captured" in r.getMessage()]) == 1
            with pytest.raises(ContractError, match=r"instance keys.*key=\.\.\..*warm_key"):
                b.attach(second)
            first.rows.update(make_records(2))
            second.rows.update(make_records(5))
        # The refused instance was not registered: only the first one was saved.
        assert b.report.sections.keys() == {"Plain.rows"}
        with boot(store_path):
            assert Plain().rows == make_records(2)


class TestClassUnchanged:
    """The decorated class is the same class, and works unchanged outside a boot."""

    def test_identity_signature_and_docstring(self) -> None:
        """Decorating returns the very class, with its signature, docstring and names."""

        class Original:
            """Docstring."""

            def __init__(self, a: int, *, b: str = "b") -> None:
                self.cache: dict[str, Record] = {}

        signature = inspect.signature(Original)
        decorated = warmstart.warm(cache=RECORDS)(Original)
        assert decorated is Original
        assert inspect.signature(Original) == signature
        assert list(signature.parameters) == ["a", "b"]
        assert Original.__doc__ == "Docstring."
        assert Original.__init__.__name__ == "__init__"
        assert Original.__qualname__.endswith("Original")
        info = Original.warm_info()  # type: ignore[attr-defined]
        assert info == WarmInfo(("cache",), ("Original.cache",), None)

    def test_class_without_init_keeps_its_signature(self) -> None:
        """A class that inherits ``object.__init__`` still takes no arguments."""

        class Bare:
            rows: dict[str, Record] = {}  # noqa: RUF012

        signature = inspect.signature(Bare)
        warmstart.warm(rows=RECORDS)(Bare)
        assert inspect.signature(Bare) == signature
        with pytest.raises(TypeError):
            Bare(1)  # type: ignore[call-arg]

    def test_works_outside_any_boot(self) -> None:
        """Outside a boot the constructor behaves as before and nothing is restored."""
        obj = Plain(3, label="y")
        assert (obj.rows, obj.size, obj.label) == ({}, 3, "y")
        assert isinstance(obj, Plain)

    def test_subclass_attaches_once(self, store_path: Path) -> None:
        """A decorated subclass of a decorated class attaches once, with its own sections."""

        @warmstart.warm(flags=FLAGS)
        class Child(Plain):
            def __init__(self) -> None:
                super().__init__()
                self.flags = Flag(on=True)

        with boot(store_path) as b:
            Child()
        assert list(b.report.sections) == ["Child.flags"]
        with boot(store_path):
            assert Child().flags == Flag(on=True)

    def test_undecorated_subclass_uses_the_base_sections(self, store_path: Path) -> None:
        """An undecorated subclass restores the base class's sections."""

        class Sub(Plain):
            pass

        with boot(store_path):
            Sub().rows.update(make_records(2))
        with boot(store_path):
            assert Plain().rows == make_records(2)

    def test_warm_clear(self) -> None:
        """``warm_clear()`` empties every warm container of an instance."""
        obj = Plain()
        obj.rows.update(make_records(2))
        obj.warm_clear()  # type: ignore[attr-defined]
        assert obj.rows == {}


class TestSlots:
    """Classes with ``__slots__``."""

    def test_slots_class_restores(self, store_path: Path) -> None:
        """A ``__slots__`` class is supported: its state is saved and restored."""

        @warmstart.warm(rows=RECORDS, flag=FLAGS)
        class Slotted:
            __slots__ = ("flag", "rows", "warm_key")

            def __init__(self, key: str) -> None:
                self.warm_key = key
                self.rows: dict[str, Record] = {}
                self.flag = Flag()

        with boot(store_path):
            obj = Slotted("s")
            obj.rows.update(make_records(4))
            obj.flag = Flag(on=True)
        with boot(store_path) as b:
            again = Slotted("s")
        assert b.report.status == "warm"
        assert again.rows == make_records(4)
        assert again.flag == Flag(on=True)


class TestDeclarationErrors:
    """Mistakes in a declaration fail at import time, with a clear message."""

    def test_not_a_contract(self) -> None:
        """A value that is neither a Contract nor a state is refused."""
        with pytest.raises(ContractError, match=r"Expected a warmstart\.Contract, got dict"):
            warmstart.warm(rows={})(type("C", (), {}))

    def test_reserved_or_dunder_names(self) -> None:
        """Reserved names cannot be warm attributes."""
        for name in ("warm_info", "__dict__"):
            with pytest.raises(ContractError, match="reserved"):
                warmstart.warm(**{name: RECORDS})(type("C", (), {}))

    def test_nothing_declared(self) -> None:
        """A class with no warm attributes is refused."""
        with pytest.raises(ContractError, match="at least one warm attribute"):
            warmstart.warm(type("C", (), {}))

    def test_not_a_class(self) -> None:
        """Decorating a function is refused."""
        with pytest.raises(ContractError, match="on a class"):
            warmstart.warm(rows=RECORDS)(len)  # type: ignore[type-var]

    def test_duplicate_sections(self) -> None:
        """Two attributes cannot share an explicit section."""
        with pytest.raises(ContractError, match="distinct section names"):
            warmstart.warm(
                a=warmstart.state(RECORDS, section="s"), b=warmstart.state(RECORDS, section="s")
            )(type("C", (), {}))

    def test_keys_only_needs_prefetch(self) -> None:
        """A key-only state needs a prefetch callable."""
        with pytest.raises(ContractError, match="prefetch"):
            warmstart.state(keys_only=True)

    def test_states_from_class_attribute(self, store_path: Path) -> None:
        """Bare ``@warm`` reads ``__warm_states__``."""

        @warmstart.warm
        class Declared:
            __warm_states__ = {"rows": RECORDS}  # noqa: RUF012

            def __init__(self) -> None:
                self.rows: dict[str, Record] = {}

        assert Declared.warm_info().sections == ("Declared.rows",)  # type: ignore[attr-defined]
