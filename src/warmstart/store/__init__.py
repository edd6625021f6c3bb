"""The LMDB checkpoint store: generations, chunks, retention, verification."""

from __future__ import annotations

from warmstart._api import claim

# Re-exported by name ("X as X") for the other wings (boot, transfer, remote,
# cli), which may import a package's names but never its private modules;
# these are not part of the public API (not in __all__).
from warmstart.store._inbound import Inbound as Inbound
from warmstart.store._prepare import SectionSpec as SectionSpec
from warmstart.store._prepare import is_lock as is_lock
from warmstart.store._reader import Reader as Reader
from warmstart.store._records import check_namespace as check_namespace
from warmstart.store._snapshot import Section, SectionStats, Snapshot
from warmstart.store._snapshot import paused_gc as paused_gc
from warmstart.store._snapshot import promote_built as promote_built
from warmstart.store._store import GenerationInfo, SaveResult
from warmstart.store._store import Store as Store  # its public path: warmstart.Store
from warmstart.store._verify import Problem, VerifyReport

__all__ = (
    "GenerationInfo",
    "Problem",
    "SaveResult",
    "Section",
    "SectionStats",
    "Snapshot",
    "VerifyReport",
)

claim(
    "warmstart.store",
    GenerationInfo,
    Problem,
    SaveResult,
    Section,
    SectionStats,
    Snapshot,
    VerifyReport,
)


def __dir__() -> tuple[str, ...]:
    return __all__
