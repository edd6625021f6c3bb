"""The LMDB checkpoint store: generations, chunks, retention, verification."""

from __future__ import annotations

# Re-exported by name ("X as X") for the other wings (transfer, remote, cli),
# which may import a package's names but never its private modules.
from warmstart.store._inbound import Inbound as Inbound
from warmstart.store._reader import Reader as Reader
from warmstart.store._snapshot import Section, SectionStats, Snapshot
from warmstart.store._store import GenerationInfo, Problem, Store, VerifyReport

__all__ = (
    "GenerationInfo",
    "Problem",
    "Section",
    "SectionStats",
    "Snapshot",
    "Store",
    "VerifyReport",
)


def __dir__() -> tuple[str, ...]:
    return __all__
