"""Import paths that moved in 0.2.0, kept working for one release with a ``DeprecationWarning``.

Two kinds (docs/changelog.md lists them):

* names that left the top level for a namespace (``warmstart.Snapshot`` is
  now ``warmstart.store.Snapshot``): ``warmstart.__getattr__`` answers them
  through :func:`moved_name`;
* modules that moved into a wing (``warmstart.snapshot``,
  ``warmstart.remote.sync``): a finder on ``sys.meta_path`` answers an import
  of the old name with the module that now holds those names.

Remove this module, and its hook in ``__init__``, in 0.3.0.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ("MOVED_MODULES", "MOVED_NAMES", "install", "moved_name")

_REMOTE_NAMES_0_1 = "PullReport PushReport Remote RemoteConflictError RemoteError RemoteHead RemoteUnavailableError SyncOutcome collect_remote list_remote open_remote pull pull_with_deadline push push_with_deadline"  # noqa: E501

#: Old top-level name -> the namespace that holds it now.
MOVED_NAMES = {
    **dict.fromkeys(
        ("ChangeSet", "is_tracked"),
        "warmstart.delta",
    ),
    **dict.fromkeys(("Codec",), "warmstart.codec"),
    **dict.fromkeys(("ChunkRef", "Manifest", "SectionManifest"), "warmstart.manifest"),
    **dict.fromkeys(("Compatibility", "FieldSchema", "Schema"), "warmstart.schema"),
    **dict.fromkeys(
        ("CheckpointReport", "HitCounter", "Metrics", "SectionReport", "counter_of"),
        "warmstart.metrics",
    ),
    **dict.fromkeys(
        ("GenerationInfo", "Problem", "Section", "SectionStats", "Snapshot", "VerifyReport"),
        "warmstart.store",
    ),
    **dict.fromkeys(("State", "WarmInfo"), "warmstart.boot"),
    **dict.fromkeys(
        (
            "MissingExtraError",
            "ReadOnlyStoreError",
            "StoreFormatError",
            "StoreFullError",
            "StoreTimeoutError",
        ),
        "warmstart.errors",
    ),
    # Every remote name of 0.1, one line: the list is history, not logic.
    **dict.fromkeys(_REMOTE_NAMES_0_1.split(), "warmstart.remote"),
    **dict.fromkeys(
        ("ExportReport", "ImportReport", "export", "import_archive"), "warmstart.transfer"
    ),
    # One progress type for every long operation now.
    "TransferProgress": "warmstart.progress.Progress",
    "RemoteProgress": "warmstart.progress.Progress",
    "parse_duration": "warmstart.boot.parse_duration",
}

#: Old module -> the module whose names it held.
MOVED_MODULES = {
    "warmstart.snapshot": "warmstart.store",
    "warmstart.checkpointer": "warmstart",
    "warmstart.warm": "warmstart.boot",
    "warmstart.hits": "warmstart.metrics",
    "warmstart.containers": "warmstart._containers",
    "warmstart.remote.sync": "warmstart.remote",
    "warmstart.remote.deadline": "warmstart.remote",
    "warmstart.remote.errors": "warmstart.remote",
    "warmstart.remote.reports": "warmstart.remote",
    "warmstart.remote.file": "warmstart.remote",
    "warmstart.remote.redis": "warmstart.remote",
    "warmstart.remote.s3": "warmstart.remote",
}


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated since warmstart 0.2.0 and goes in 0.3.0; use {new}",
        DeprecationWarning,
        stacklevel=3,
    )


def moved_name(name: str) -> Any:
    """The object a moved top-level name now names (warns); AttributeError if none."""
    target = MOVED_NAMES.get(name)
    if target is None:
        msg = f"module 'warmstart' has no attribute {name!r}"
        raise AttributeError(msg)
    module, _, attribute = target.rpartition(".") if target.count(".") > 1 else (target, "", name)
    _warn(f"warmstart.{name}", f"{module}.{attribute}")
    return getattr(importlib.import_module(module), attribute)


class _Alias:
    """Loads an old module name as a stand-in whose attributes are the new module's.

    A stand-in, not the new module itself: the import system would rebind
    the new module's ``__spec__`` to the old name.
    """

    def __init__(self, old: str, new: str) -> None:
        self.old = old
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        """The default module: an empty one named after the old path."""

    def exec_module(self, module: ModuleType) -> None:
        _warn(f"the module {self.old}", self.new)
        target = importlib.import_module(self.new)
        vars(module)["__getattr__"] = lambda name: getattr(target, name)
        vars(module)["__all__"] = getattr(target, "__all__", ())


class _OldModules:
    # Not importlib.abc classes: importing importlib.abc costs ~20 ms at boot
    # (it pulls in importlib.resources, tempfile, shutil); the protocols are duck-typed.

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,  # noqa: ARG002 - the finder protocol's signature
        target: ModuleType | None = None,  # noqa: ARG002
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        loader: Any = _Alias(fullname, new)  # a Loader by protocol (see above)
        return importlib.machinery.ModuleSpec(fullname, loader)


def install() -> None:
    """Answer imports of moved modules (once per interpreter)."""
    if not any(isinstance(finder, _OldModules) for finder in sys.meta_path):
        sys.meta_path.append(_OldModules())
