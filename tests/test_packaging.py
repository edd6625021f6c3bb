"""What the installed package promises: version, public names, typing marker, cheap import."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import inspect
import json
import pkgutil
import subprocess
import sys
import typing
from pathlib import Path
from types import ModuleType

import pytest

import warmstart

ROOT = Path(__file__).resolve().parent.parent
#: Optional integrations: importing warmstart must never pull them in.
EXTRAS = (
    "cachetools",
    "prometheus_client",
    "redis",
    "obstore",
    "attrs",
    "pydantic",
    "asyncio",
    "gunicorn",
    "uvicorn",
    "starlette",
    "fastapi",
    "flask",
    "werkzeug",
    "django",
)


def public_modules() -> list[str]:
    """Every ``warmstart.<name>`` module whose name has no leading underscore."""
    return sorted(
        info.name
        for info in pkgutil.walk_packages(warmstart.__path__, prefix="warmstart.")
        if not any(part.startswith("_") for part in info.name.split("."))
    )


class TestVersion:
    def test_version_matches_metadata(self) -> None:
        """``warmstart.__version__`` is the installed distribution's version."""
        assert warmstart.__version__ == importlib.metadata.version("warmstart")

    def test_a_save_records_the_version_without_importlib_metadata(self, tmp_path: Path) -> None:
        """Importing it held the GIL 30-50 ms inside the first checkpoint's commit (issue 15)."""
        code = (
            "import sys, warmstart\n"
            "with warmstart.Store(sys.argv[1]) as store:\n"
            "    store.save('ns', {'a': (warmstart.Contract('n', int, key=str), {'k': 1})})\n"
            "    print(store.manifest('ns').library_version)\n"
            "print('importlib.metadata' in sys.modules)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "s")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out == [warmstart.__version__, "False"]


#: The tiers: the essentials at the top, the rest in these namespaces (issue 13).
NAMESPACES = (
    "warmstart",
    "warmstart.boot",
    "warmstart.cli",
    "warmstart.codec",
    "warmstart.conformance",
    "warmstart.contract",
    "warmstart.delta",
    "warmstart.errors",
    "warmstart.exposure",
    "warmstart.manifest",
    "warmstart.metrics",
    "warmstart.progress",
    "warmstart.prometheus",
    "warmstart.remote",
    "warmstart.schema",
    "warmstart.store",
    "warmstart.testing",
    "warmstart.transfer",
    "warmstart.workers",
    "warmstart.integrations",
    "warmstart.integrations.asgi",
    "warmstart.integrations.django",
    "warmstart.integrations.django.apps",
    "warmstart.integrations.flask",
    "warmstart.integrations.gunicorn",
)


def exported() -> dict[str, list[str]]:
    """Public name -> the namespaces whose ``__all__`` lists it."""
    where: dict[str, list[str]] = {}
    for namespace in NAMESPACES:
        for name in importlib.import_module(namespace).__all__:
            if name != "__version__":
                where.setdefault(name, []).append(namespace)
    return where


class TestPublicNames:
    @pytest.mark.parametrize("name", warmstart.__all__)
    def test_every_exported_name_exists(self, name: str) -> None:
        """Each name in ``warmstart.__all__`` can be read from the package."""
        assert getattr(warmstart, name) is not None

    def test_the_top_level_holds_the_essentials(self) -> None:
        """About twenty names at the top; the rest lives in namespaces."""
        assert 18 <= len(warmstart.__all__) <= 25
        for essential in ("boot", "warm", "state", "Contract", "Store", "TrackedDict", "track"):
            assert essential in warmstart.__all__

    def test_no_duplicates(self) -> None:
        """``__all__`` lists each name once."""
        assert len(set(warmstart.__all__)) == len(warmstart.__all__)

    def test_dir_is_sorted_all(self) -> None:
        """``dir(warmstart)`` shows exactly the public API, sorted."""
        assert dir(warmstart) == sorted(warmstart.__all__)

    def test_one_public_path_per_name(self) -> None:
        """No name is exported by two namespaces."""
        twice = {name: spaces for name, spaces in exported().items() if len(spaces) > 1}
        assert twice == {}

    @pytest.mark.parametrize("namespace", NAMESPACES)
    def test_reprs_show_the_public_path(self, namespace: str) -> None:
        """Every exported class and function says it lives where users import it from."""
        module = importlib.import_module(namespace)
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) or inspect.isfunction(obj):
                assert obj.__module__ == namespace, (name, obj.__module__)

    @pytest.mark.parametrize("namespace", NAMESPACES)
    def test_claimed_classes_annotations_resolve_on_demand(self, namespace: str) -> None:
        """After resolve_annotations() (the docs build calls it), get_type_hints works."""
        from warmstart._api import resolve_annotations

        module = importlib.import_module(namespace)
        resolve_annotations()
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                assert isinstance(typing.get_type_hints(obj), dict), name

    def test_the_namespaces_are_the_public_modules(self) -> None:
        """Every public module (no underscore in its path) is one of the namespaces."""
        assert set(public_modules()) | {"warmstart"} == set(NAMESPACES)

    def test_lazy_namespaces_are_attributes(self) -> None:
        """``warmstart.remote`` and ``warmstart.transfer`` resolve on first use."""
        assert warmstart.remote.push is not None
        assert warmstart.transfer.export is not None


class TestDeprecatedPaths:
    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("Snapshot", "warmstart.store"),
            ("Codec", "warmstart.codec"),
            ("push", "warmstart.remote"),
        ],
    )
    def test_a_moved_top_level_name_warns_and_works(self, old: str, new: str) -> None:
        """A name that left the top level resolves, with a warning naming its new path."""
        with pytest.warns(DeprecationWarning, match=f"use {new}.{old}"):
            obj = getattr(warmstart, old)
        assert obj is getattr(importlib.import_module(new), old)

    def test_a_moved_module_warns_and_works(self) -> None:
        """``from warmstart.snapshot import Snapshot`` (0.1 path) still works, with a warning."""
        code = (
            "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    import warmstart.snapshot\nexcept DeprecationWarning as e: print(e)\n"
            "warnings.simplefilter('ignore')\n"
            "from warmstart.remote.sync import push\nimport warmstart.remote\n"
            "print(push is warmstart.remote.push)\n"
        )
        out = _python(code).splitlines()
        warning = (
            "the module warmstart.snapshot is deprecated since warmstart 0.2.0 and goes in "
            "0.3.0; use warmstart.store"
        )
        assert out == [warning, "True"]

    def test_an_unknown_name_is_still_an_attribute_error(self) -> None:
        """The deprecation hook answers only for names that moved."""
        with pytest.raises(AttributeError, match="has no attribute 'nope'"):
            warmstart.nope  # type: ignore[attr-defined]  # noqa: B018


@pytest.fixture(params=public_modules())
def module(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


class TestPublicModules:
    def test_modules_found(self) -> None:
        """The foundation modules are among the public ones."""
        assert {"warmstart.codec", "warmstart.contract", "warmstart.errors"} <= set(
            public_modules()
        )
        assert "warmstart.schema" in public_modules()

    def test_module_declares_all(self, module: ModuleType) -> None:
        """Every public module declares ``__all__``, and each name in it exists."""
        assert isinstance(module.__all__, (list, tuple))
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"

    def test_module_dir_is_its_all(self, module: ModuleType) -> None:
        """Every public module defines ``__dir__``, so ``dir()`` shows only its API."""
        assert "__dir__" in vars(module)
        assert dir(module) == sorted(module.__all__)


class TestDistribution:
    def test_py_typed_ships(self) -> None:
        """The ``py.typed`` marker is inside the installed package."""
        assert importlib.resources.files("warmstart").joinpath("py.typed").is_file()

    def test_py_typed_goes_into_the_wheel(self) -> None:
        """The wheel packs the package directory, and git (which hatch follows) keeps py.typed."""
        pyproject = (ROOT / "pyproject.toml").read_text()
        assert 'packages = ["src/warmstart"]' in pyproject
        assert (ROOT / "src" / "warmstart" / "py.typed").is_file()
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", "src/warmstart/py.typed"],
            cwd=ROOT,
            check=False,
            capture_output=True,
        )
        assert ignored.returncode != 0, "py.typed is git-ignored, so hatch would leave it out"


class TestImportCost:
    def test_import_pulls_in_no_extras_and_no_metadata(self) -> None:
        """A fresh ``import warmstart`` imports no optional extra and not importlib.metadata."""
        code = "import json, sys\nimport warmstart\nprint(json.dumps(sorted(sys.modules)))\n"
        loaded = set(json.loads(_python(code)))
        assert "warmstart" in loaded
        leaked = sorted(m for m in loaded if m.split(".")[0] in EXTRAS)
        assert leaked == []
        assert "importlib.metadata" not in loaded

    def test_the_engine_loads_at_the_first_use_of_boot(self) -> None:
        """``import warmstart`` and ``@warm`` declarations leave the engine and store unloaded."""
        code = (
            "import json, sys, warmstart\n"
            "@warmstart.warm(hits=warmstart.Contract('hits', int))\n"
            "class Service:\n"
            "    def __init__(self): self.hits = {}\n"
            "before = sorted(sys.modules)\n"
            "factory = warmstart.boot\n"
            "shown = [repr(factory), repr(warmstart.Store)]\n"
            "print(json.dumps([before, sorted(sys.modules), *shown]))\n"
        )
        before, after, factory, store = json.loads(_python(code))
        engine = {"warmstart.boot._boot", "warmstart.store._store"}
        assert engine.isdisjoint(before)
        assert "warmstart.boot._memo" not in after  # @cached loads on its own first use
        assert engine <= set(after)
        assert (factory, store) == ("<class 'warmstart.Boot'>", "<class 'warmstart.Store'>")

    def test_every_path_to_a_lazy_name_gives_the_same_object(self) -> None:
        import warmstart
        import warmstart.boot as boot_attribute
        from warmstart import Boot, Store, boot, cached
        from warmstart.boot import CacheInfo, Collector, HandoffReport
        from warmstart.store import Store as StoreInWing

        assert boot is Boot is warmstart.boot is boot_attribute
        assert Store is StoreInWing is warmstart.Store
        assert cached is warmstart.cached
        assert [t.__module__ for t in (Boot, Store, CacheInfo, Collector, HandoffReport)] == [
            "warmstart",
            "warmstart",
            "warmstart.boot",
            "warmstart.boot",
            "warmstart.boot",
        ]
        with pytest.raises(AttributeError, match="no attribute 'Bootx'"):
            _ = sys.modules["warmstart.boot"].Bootx

    def test_an_extra_is_installed(self) -> None:
        """The check above can fail: cachetools (a test dependency) is importable here."""
        assert importlib.util.find_spec("cachetools") is not None


def _python(code: str) -> str:
    """What ``code`` prints, run by a fresh interpreter (nothing imported yet)."""
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
