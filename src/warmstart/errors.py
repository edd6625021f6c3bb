"""The whole exception tree of warmstart, and nothing else.

Every error the library raises on purpose derives from :class:`WarmstartError`,
and also from the builtin that fits (``TypeError`` for a bad contract,
``KeyError`` for a missing checkpoint, ``TimeoutError`` for a lock wait), so
code that already catches the builtin keeps working.

>>> issubclass(IntegrityError, DecodeError) and issubclass(DecodeError, WarmstartError)
True
"""

from __future__ import annotations

# The main errors are imported from the top level (``warmstart.IntegrityError``);
# this namespace is the path of the others.
__all__ = (
    "MissingExtraError",
    "ReadOnlyStoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreTimeoutError",
)


def __dir__() -> tuple[str, ...]:
    return __all__


class WarmstartError(Exception):
    """Root of every error warmstart raises on purpose.

    .. versionadded:: 0.1.0
    """


class ContractError(WarmstartError, TypeError):
    """A contract is defined wrongly (bad type, key type, version or upgraders).

    Raised when the contract or the decorated class is created, not at restore.

    .. versionadded:: 0.1.0
    """


class EncodeError(WarmstartError, ValueError):
    """State could not be encoded (a value is not of the contract's type).

    .. versionadded:: 0.1.0
    """


class DecodeError(WarmstartError, ValueError):
    """Stored bytes could not be turned back into state.

    .. versionadded:: 0.1.0
    """


class IntegrityError(DecodeError):
    """A frame, chunk or manifest is damaged or tampered with.

    Bad magic, truncated or malformed frame, digest or MAC mismatch, declared
    length over the cap. Checkpoint files are untrusted input: this is the only
    error that malformed bytes can raise.

    .. versionadded:: 0.1.0
    """


class IncompatibleVersionError(DecodeError):
    """No reader exists for the stored contract version.

    Either an upgrader step is missing (the message names the gap), or a newer
    writer's schema lacks a field the reader requires.

    .. versionadded:: 0.1.0
    """


class StoreError(WarmstartError):
    """The checkpoint store failed (open, write, read, lock).

    .. versionadded:: 0.1.0
    """


class CheckpointNotFoundError(StoreError, KeyError):
    """No such namespace, generation or section, or none that verifies.

    Attributes:
        skipped: why each stored generation was skipped, when some exist but
            none verifies (damage, not a first start); empty otherwise.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0 ``skipped``.
    """

    def __init__(self, *args: object, skipped: tuple[str, ...] = ()) -> None:
        super().__init__(*args)
        self.skipped = skipped

    def __str__(self) -> str:
        # KeyError.__str__ quotes its argument; a sentence reads better unquoted.
        return str(self.args[0]) if self.args else ""


class StoreFormatError(StoreError):
    """The store was written by a newer, unknown on-disk format.

    .. versionadded:: 0.1.0
    """


class StoreFullError(StoreError, OSError):
    """The map reached its configured maximum, or the disk is full.

    The save that hit it is rolled back; the previous generation is intact.

    .. versionadded:: 0.1.0
    """


class ReadOnlyStoreError(StoreError, PermissionError):
    """A write was attempted on a store opened read-only (or on a read-only path).

    .. versionadded:: 0.1.0
    """


class StoreTimeoutError(StoreError, TimeoutError):
    """An operation did not finish inside its deadline.

    .. versionadded:: 0.1.0
    """


class MissingExtraError(WarmstartError, ImportError):
    """An optional integration was used without its extra installed.

    The message names the package to install (or warmstart's extra that brings it).

    .. versionadded:: 0.1.0
    """


class ColdStartWarning(UserWarning):
    """A warm path fell back to a cold start; the message says why.

    .. versionadded:: 0.1.0
    """
