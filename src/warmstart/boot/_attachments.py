"""The objects a boot checkpoints, and the section each one owns.

Private to the boot wing. Lookups are by identity and by section name, so
attaching stays linear in the number of objects (0.1 scanned lists: 8,000
objects took 18 s).

A second instance whose keyless section an attached object already owns is
not captured (one WARNING per class): a boot open for the service's whole
life must not fail a request that builds one. Attached by hand it is an
error, as two owners of one section would overwrite each other's state.
"""

from __future__ import annotations

import logging
import threading

from warmstart.boot._warm import WarmSpec
from warmstart.errors import ContractError

__all__ = ("Attached", "Attachments")

log = logging.getLogger("warmstart.boot")


class Attached:
    """One object attached to a boot, and the sections it owns."""

    __slots__ = ("obj", "sections", "spec")

    def __init__(self, obj: object, spec: WarmSpec, sections: dict[str, str]) -> None:
        self.obj = obj
        self.spec = spec
        self.sections = sections  # attribute -> section name


class Attachments:
    """A boot's attached objects, by identity and by section."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._by_id: dict[int, Attached] = {}
        self._owners: dict[str, Attached] = {}
        self._warned: set[type] = set()

    def relock(self, lock: threading.RLock) -> None:
        """Use ``lock`` from now on (a forked child's fresh one)."""
        self._lock = lock

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)

    def live(self) -> list[Attached]:
        """The attached objects, in attach order."""
        with self._lock:
            return list(self._by_id.values())

    def sections(self) -> set[str]:
        """Every section an attached object owns."""
        with self._lock:
            return set(self._owners)

    def add(
        self, obj: object, spec: WarmSpec, sections: dict[str, str], *, captured: bool
    ) -> Attached | None:
        """Register ``obj``; None when it is already attached, or not captured.

        Raises:
            ContractError: attached by hand while another object owns one of its sections.
        """
        with self._lock:
            if id(obj) in self._by_id:
                return None  # made inside the boot and attached again by hand
            taken = {name for name in sections.values() if name in self._owners}
            if taken:
                if not captured:
                    msg = (
                        f"Expected distinct instance keys for instances of {spec.cls.__name__}; "
                        f"sections {sorted(taken)} are taken - pass @warm(key=...) or set warm_key"
                    )
                    raise ContractError(msg)
                self._warn_once(spec, taken)
                return None
            attached = Attached(obj, spec, sections)
            self._by_id[id(obj)] = attached
            for name in sections.values():
                self._owners[name] = attached
            return attached

    def remove(self, attached: Attached) -> None:
        """Forget ``attached`` (its restore failed)."""
        with self._lock:
            if self._by_id.get(id(attached.obj)) is attached:
                del self._by_id[id(attached.obj)]
            for name in attached.sections.values():
                if self._owners.get(name) is attached:
                    del self._owners[name]

    def _warn_once(self, spec: WarmSpec, taken: set[str]) -> None:
        if spec.cls in self._warned:
            return
        self._warned.add(spec.cls)
        log.warning(
            "another instance of %s was built while %s is owned by an attached one: it is not "
            "captured (not restored, not saved); give instances keys with @warm(key=...), or "
            "attach one explicitly with boot.attach()",
            spec.cls.__name__,
            ", ".join(sorted(taken)),
        )
