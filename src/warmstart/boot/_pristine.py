"""Whether a process's warm state is still exactly what it restored.

Private to the boot wing. Several processes may write one namespace (workers
of one service; a pre-forking server's master and its workers). The last
checkpoint wins, with one exception the boot enforces: a process whose state
is unchanged since it restored writes nothing, so it never replaces a head
another process wrote after that restore. Otherwise an idle copy (a gunicorn
master that restored with ``preload_app`` and never served) would overwrite
its workers' fresher state at every shutdown (issue 14).

Unchanged means, per section: a tracked container (``TrackedDict``,
``track()``) logged no write, deletion or ``clear()`` since its restore; an
untracked one holds the same keys, in the same order, bound to the very same
value objects as right after its restore (a reference per entry, compared in
C; an object mutated in place is not seen, as for identity deltas); a single
Struct attribute is the same object. The references are kept only until the
process's first save, after which it is a writer like any other. Untracked
containers are listed a slice at a time (``warmstart._sliced``), pacing
inside a checkpoint like the save itself (issue 15).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

from warmstart._pacing import drop, pace, pacing, parts
from warmstart._sliced import read_all
from warmstart.boot._attachments import Attached
from warmstart.delta import change_log

__all__ = ("Pristine",)


def _tracked_clean(container: object) -> bool | None:
    """For a tracked container: whether it logged nothing (None: it is not tracked)."""
    log = change_log(container)
    if log is None:
        return None
    return not (log.dirty or log.deletes or log.cleared)


class Pristine:
    """References to what each attached container held once restored."""

    def __init__(self, generation: int) -> None:
        #: The generation restored; a head other than it was written by another process.
        self.generation = generation
        self._seen: dict[str, tuple[Sequence[Any], Sequence[Any]] | object] = {}

    def note(self, attached: Iterable[Attached]) -> None:
        """Remember the state of sections not noted yet (called once restores are done)."""
        with pacing():
            self._note(attached)

    def _note(self, attached: Iterable[Attached]) -> None:
        for item in attached:
            obj = item.obj
            for attr, section in item.sections.items():
                if section in self._seen:
                    continue
                value: Any = getattr(obj, attr, None)
                if _tracked_clean(value) is not None:
                    self._seen[section] = None  # its change log answers later
                elif hasattr(value, "keys"):
                    self._seen[section] = _entries(value)
                else:
                    self._seen[section] = value  # a single Struct: by identity

    def release(self) -> None:
        """Forget the references, freeing each noted read a slice a step."""
        seen, self._seen = self._seen, {}
        while seen:
            _, noted = seen.popitem()
            if isinstance(noted, tuple):
                keys, values = noted
                del noted
                drop(keys)
                drop(values)
                del keys, values
            pace()

    def unchanged(self, attached: Iterable[Attached]) -> bool:
        """Whether every attached section holds what it held when noted."""
        for item in attached:
            obj = item.obj
            for attr, section in item.sections.items():
                if section not in self._seen or not self._same(section, getattr(obj, attr, None)):
                    return False  # changed, or attached after the restore: new state
        return True

    def _same(self, section: str, value: Any) -> bool:
        clean = _tracked_clean(value)
        if clean is not None:
            return clean
        noted = self._seen[section]
        if not isinstance(noted, tuple):
            return value is noted
        keys, values = _entries(value)
        same = len(values) == len(noted[1]) and keys == noted[0] and _same_objects(values, noted[1])
        # A million references each: freed a slice a step, not in one 10-15 ms call.
        drop(keys)
        drop(values)
        return same


def _same_objects(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """Whether ``a`` and ``b`` (as long) hold the very same objects, compared a slice a step."""
    for mine, theirs in zip(parts(a), parts(b)):
        if not all(map(operator.is_, mine, theirs)):
            return False
        pace()
    return True


def _entries(container: Any) -> tuple[Sequence[Any], Sequence[Any]]:
    """An untracked container's keys and values, a slice at a time (its log untouched)."""
    _, (keys, values, _) = read_all(container, None)
    return keys, values
