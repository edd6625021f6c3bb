"""warmstart: keep a Python service's warm state across restarts.

The essentials are here; the rest lives in namespaces, one path per name:
``warmstart.store`` (snapshots, listings), ``warmstart.delta`` (change
tracking), ``warmstart.schema`` and ``warmstart.manifest`` (what is
stored), ``warmstart.codec``, ``warmstart.metrics`` (reports, counters),
``warmstart.errors`` (the whole exception tree), ``warmstart.progress``,
``warmstart.transfer`` (archives), ``warmstart.remote`` (remote tiers),
``warmstart.exposure`` (which contract version live readers read),
``warmstart.conformance`` (a dry run of new contracts on stored state),
``warmstart.testing`` (helpers for your tests) and ``warmstart.prometheus``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from warmstart import _deprecated
from warmstart._api import claim, load_lazily
from warmstart._hits import counted
from warmstart._version import version
from warmstart.boot import state, warm
from warmstart.contract import Contract
from warmstart.delta import CompactionPolicy, TrackedDict, track
from warmstart.errors import (
    CheckpointNotFoundError,
    ColdStartWarning,
    ContractError,
    DecodeError,
    EncodeError,
    IncompatibleVersionError,
    IntegrityError,
    StoreError,
    WarmstartError,
)
from warmstart.metrics import BootReport
from warmstart.schema import compatibility

if TYPE_CHECKING:
    from warmstart.boot import Boot, Checkpointer, boot, cached, cachedmethod
    from warmstart.store import Store

__all__ = (
    "Boot",
    "BootReport",
    "CheckpointNotFoundError",
    "Checkpointer",
    "ColdStartWarning",
    "CompactionPolicy",
    "Contract",
    "ContractError",
    "DecodeError",
    "EncodeError",
    "IncompatibleVersionError",
    "IntegrityError",
    "Store",
    "StoreError",
    "TrackedDict",
    "WarmstartError",
    "__version__",
    "boot",
    "cached",
    "cachedmethod",
    "compatibility",
    "counted",
    "state",
    "track",
    "warm",
)

#: Loaded on first use (see ``warmstart.boot``): the boot engine, the memo
#: decorators and the store. ``import warmstart`` and the ``@warm`` and
#: ``state()`` declarations of a service's modules leave them for its boot.
_LAZY = {
    **dict.fromkeys(
        ("Boot", "boot", "Checkpointer", "cached", "cachedmethod"), ("warmstart.boot", "warmstart")
    ),
    "Store": ("warmstart.store", "warmstart"),
}
# Importing the boot wing bound its package as the attribute ``boot``; the name
# belongs to the ``boot()`` factory, which __getattr__ loads on first use.
globals().pop("boot", None)
claim("warmstart", *(globals()[name] for name in __all__ if name in globals()))
_deprecated.install()

#: Namespaces that are not on a service's boot path load on first use.
_LAZY_MODULES = ("remote", "testing", "transfer", "prometheus", "conformance", "exposure")


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return version()
    if name in _LAZY:
        return load_lazily(globals(), _LAZY, name)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"warmstart.{name}")
    return _deprecated.moved_name(name)


def __dir__() -> list[str]:
    return sorted(__all__)
