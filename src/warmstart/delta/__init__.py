"""Deltas: change tracking, change detection, replay and compaction.

A periodic checkpoint should cost what changed, not what exists. Changes are
found one of three ways, cheapest first:

* **tracked**: a :class:`~warmstart.TrackedDict`, or a ``cachetools`` cache
  passed through :func:`~warmstart.track`, records dirty and deleted keys at
  O(1) per write (``_tracking``);
* **identity** and **hash**: an untracked mapping is compared with
  fingerprints kept from the last checkpoint (``_fingerprints``).

Replay (``_replay``) is deterministic and idempotent; the compaction policy
(``_policy``) decides when a chain gives way to a fresh base.
"""

from __future__ import annotations

from warmstart._api import claim

# Re-exported by name ("X as X") for the top level (TrackedDict, track,
# CompactionPolicy) and for the other wings (store, boot, cli), which may
# import a package's names but never its private modules. Only __all__ is
# this namespace's public API.
from warmstart.delta._fingerprints import Fingerprints as Fingerprints
from warmstart.delta._fingerprints import deeply_immutable as deeply_immutable
from warmstart.delta._policy import CompactionPolicy as CompactionPolicy
from warmstart.delta._replay import FoldedChain as FoldedChain
from warmstart.delta._replay import replay
from warmstart.delta._replay import replay_batch as replay_batch
from warmstart.delta._tracking import ABSENT as ABSENT
from warmstart.delta._tracking import ChangeLog as ChangeLog
from warmstart.delta._tracking import ChangeSet, is_tracked, mark_changed
from warmstart.delta._tracking import LoggedDict as LoggedDict
from warmstart.delta._tracking import TrackedDict as TrackedDict
from warmstart.delta._tracking import change_log as change_log
from warmstart.delta._tracking import fold_keys as fold_keys
from warmstart.delta._tracking import track as track
from warmstart.delta._tracking import watch_reads as watch_reads

__all__ = ("ChangeSet", "is_tracked", "mark_changed", "replay")

claim("warmstart.delta", ChangeSet, is_tracked, mark_changed, replay)


def __dir__() -> tuple[str, ...]:
    return __all__
