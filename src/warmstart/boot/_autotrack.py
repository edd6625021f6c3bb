"""Change tracking for the containers a boot checkpoints periodically.

Private; used by ``boot``. A periodic checkpoint of an untracked container
must read and diff every entry; a tracked one costs what changed, and a base
of it is read a slice at a time as of one moment (``warmstart._sliced``).
So a boot with ``interval=`` tracks each warm container when it is attached,
before it is restored, unless its ``state(track=False)``:

- a ``cachetools`` cache (any Python-level mapping of a supported kind) is
  tracked in place, ``track(cache)``: same object, its class swapped for a
  subclass that records writes;
- a plain ``dict`` cannot record its writes, and its class cannot be
  changed in place: the attribute is set to a ``LoggedDict`` holding the same
  entries (a ``dict`` subclass: ``isinstance(x, dict)`` holds and reads run
  in C). Only when the object's attribute is the dict's one reference: code
  that kept the dict elsewhere (a bound ``d.get``, another attribute) would
  go on writing the old one, unseen. Such a dict stays untracked (diffed).
  Nor when its values can change in place (a mutable Struct, a list field):
  a read hands out a value the service may change unseen, so reads must
  count as writes (issue 14), and a ``LoggedDict``'s reads run in C,
  unseen. A hash diff sees such changes; a tracked cache counts its reads.

``OrderedDict`` and other dict subclasses stay untracked.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec

from warmstart._containers import is_supported
from warmstart.boot._warm import WarmSpec
from warmstart.delta import LoggedDict, deeply_immutable, is_tracked, track

__all__ = ()

log = logging.getLogger("warmstart.boot")


def track_attached(obj: object, spec: WarmSpec, *, periodic: bool) -> None:
    """Track ``obj``'s warm containers (``state(track=...)``, by default when ``periodic``)."""
    for attr, st in spec.states.items():
        wanted = st.track if st.track is not None else periodic
        if not wanted or st.keys_only or st.contract is None:
            continue
        why = _track(obj, attr, mutable=not deeply_immutable(st.contract.type))
        if why:
            log.info(
                "%s.%s stays untracked: %s",
                type(obj).__name__,
                attr,
                why,
                extra={"attribute": attr},
            )


def _track(obj: object, attr: str, *, mutable: bool) -> str:
    """Track ``obj.<attr>`` (``mutable``: its values can change in place); why not, or ``""``."""
    value: Any = getattr(obj, attr, None)
    if value is None or isinstance(value, msgspec.Struct) or is_tracked(value):
        return ""
    if type(value) is dict:
        # The object's reference, ``value`` here, and getrefcount's argument.
        shared = sys.getrefcount(value) > 3
        del value
        return _log_dict(obj, attr, mutable=mutable, shared=shared)
    if isinstance(value, dict) or not is_supported(value):
        return f"a {type(value).__name__} cannot be tracked in place (use warmstart.TrackedDict)"
    track(value)
    return ""


def _log_dict(obj: object, attr: str, *, mutable: bool, shared: bool) -> str:
    """Set ``obj.<attr>``, a plain dict, to a ``LoggedDict`` of it; why not, or ``""``."""
    if mutable:
        return "its values can change in place, unseen by a dict's reads (it is diffed)"
    if shared:
        return "the dict is also referenced elsewhere (use warmstart.TrackedDict)"
    try:
        setattr(obj, attr, LoggedDict(getattr(obj, attr)))
    except (AttributeError, TypeError) as exc:
        return f"the attribute cannot be set ({exc})"
    return ""
