"""warmstart: keep a Python service's warm state across restarts."""

import importlib
from typing import TYPE_CHECKING, Any

from warmstart.boot._boot import Boot, boot, parse_duration
from warmstart.boot._checkpointer import Checkpointer
from warmstart.boot._warm import State, WarmInfo, state, warm
from warmstart.codec import Codec
from warmstart.contract import Contract
from warmstart.delta import ChangeSet, CompactionPolicy, TrackedDict, is_tracked, track
from warmstart.errors import (
    CheckpointNotFoundError,
    ColdStartWarning,
    ContractError,
    DecodeError,
    EncodeError,
    IncompatibleVersionError,
    IntegrityError,
    MissingExtraError,
    ReadOnlyStoreError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreTimeoutError,
    WarmstartError,
)
from warmstart.hits import HitCounter, counted, counter_of
from warmstart.manifest import ChunkRef, Manifest, SectionManifest
from warmstart.metrics import BootReport, CheckpointReport, Metrics, SectionReport
from warmstart.schema import Compatibility, FieldSchema, Schema, compatibility
from warmstart.store._snapshot import Section, SectionStats, Snapshot
from warmstart.store._store import GenerationInfo, Problem, Store, VerifyReport

if TYPE_CHECKING:
    from warmstart.remote import (
        PullReport,
        PushReport,
        Remote,
        RemoteConflictError,
        RemoteError,
        RemoteHead,
        RemoteProgress,
        RemoteUnavailableError,
        SyncOutcome,
        collect_remote,
        list_remote,
        open_remote,
        pull,
        pull_with_deadline,
        push,
        push_with_deadline,
    )
    from warmstart.transfer import (
        ExportReport,
        ImportReport,
        TransferProgress,
        export,
        import_archive,
    )

# Moving state between stores and hosts is not on a service's boot path:
# those modules (and what they import) load on first use.
_LAZY = {
    "PullReport": "warmstart.remote",
    "PushReport": "warmstart.remote",
    "Remote": "warmstart.remote",
    "RemoteConflictError": "warmstart.remote",
    "RemoteError": "warmstart.remote",
    "RemoteHead": "warmstart.remote",
    "RemoteProgress": "warmstart.remote",
    "RemoteUnavailableError": "warmstart.remote",
    "SyncOutcome": "warmstart.remote",
    "collect_remote": "warmstart.remote",
    "list_remote": "warmstart.remote",
    "open_remote": "warmstart.remote",
    "pull": "warmstart.remote",
    "pull_with_deadline": "warmstart.remote",
    "push": "warmstart.remote",
    "push_with_deadline": "warmstart.remote",
    "ExportReport": "warmstart.transfer",
    "ImportReport": "warmstart.transfer",
    "TransferProgress": "warmstart.transfer",
    "export": "warmstart.transfer",
    "import_archive": "warmstart.transfer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    # importlib.metadata costs ~50 ms to import: only pay it when asked.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

        try:
            return version("warmstart")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            return "0+unknown"
    msg = f"module 'warmstart' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = (
    "Boot",
    "BootReport",
    "ChangeSet",
    "CheckpointNotFoundError",
    "CheckpointReport",
    "Checkpointer",
    "ChunkRef",
    "Codec",
    "ColdStartWarning",
    "CompactionPolicy",
    "Compatibility",
    "Contract",
    "ContractError",
    "DecodeError",
    "EncodeError",
    "ExportReport",
    "FieldSchema",
    "GenerationInfo",
    "HitCounter",
    "ImportReport",
    "IncompatibleVersionError",
    "IntegrityError",
    "Manifest",
    "Metrics",
    "MissingExtraError",
    "Problem",
    "PullReport",
    "PushReport",
    "ReadOnlyStoreError",
    "Remote",
    "RemoteConflictError",
    "RemoteError",
    "RemoteHead",
    "RemoteProgress",
    "RemoteUnavailableError",
    "Schema",
    "Section",
    "SectionManifest",
    "SectionReport",
    "SectionStats",
    "Snapshot",
    "State",
    "Store",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreTimeoutError",
    "SyncOutcome",
    "TrackedDict",
    "TransferProgress",
    "VerifyReport",
    "WarmInfo",
    "WarmstartError",
    "__version__",
    "boot",
    "collect_remote",
    "compatibility",
    "counted",
    "counter_of",
    "export",
    "import_archive",
    "is_tracked",
    "list_remote",
    "open_remote",
    "parse_duration",
    "pull",
    "pull_with_deadline",
    "push",
    "push_with_deadline",
    "state",
    "track",
    "warm",
)
