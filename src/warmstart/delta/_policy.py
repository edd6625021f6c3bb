"""When a delta chain gives way to a fresh base."""

from __future__ import annotations

import msgspec

__all__ = ("CompactionPolicy",)


class CompactionPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When the next checkpoint writes a fresh base instead of another delta.

    Args:
        max_deltas: longest delta chain before compacting. Restore decodes every
            delta after the base, so a long chain slows boot.
        max_ratio: compact once the deltas' stored bytes reach this fraction of
            the base's. Restore cost grows with the entries the deltas hold,
            not with their number, so this is the bound that matters.

    The defaults weigh checkpoint cost against restore cost, measured by
    benchmarks/delta.py (docs/benchmarks.md) at 1,000,000 records with deltas
    of 1% each: a delta costs 12-17 ms and a fresh base a full save, 0.28-0.43
    s; a restore of the base plus 4 deltas cost 1.10-1.17x the compacted base,
    plus 8 deltas 1.17-1.21x, plus 16 deltas 1.32-1.50x. Checkpoints run far
    more often than restores, so 10% compacts 1% deltas after the twelfth (a
    base every thirteen checkpoints: about 37 ms per checkpoint amortized,
    against about 53 ms when compacting after the seventh) while a restore stays near
    1.25x; smaller deltas chain up to 16.
    """

    max_deltas: int = 16
    max_ratio: float = 0.10

    def wants_base(self, chain: int, delta_bytes: int, base_bytes: int) -> bool:
        """Whether a checkpoint on a chain this long and this heavy should compact."""
        return chain >= self.max_deltas or delta_bytes >= self.max_ratio * max(base_bytes, 1)
