"""What decoding one untrusted msgpack payload may allocate, checked before it does.

Private, core (no I/O); used by ``contract`` (chunk payloads at restore),
``manifest`` (manifests from stores, archives and remotes) and the CLI's raw
entries. Decompression is capped (``codec.MAX_PAYLOAD``, 64 MiB), but msgpack
amplifies: one byte ``0x80`` decodes to an empty dict of 64 bytes, a byte
``0x90`` in a field typed ``set[int]`` to a set of 216. A 5 MB chunk of a few
million empty maps cost 276 MiB at load (issue 17); at the 64 MiB cap, one
chunk could cost several GB.

Every payload is held to :data:`MAX_DECODED` bytes of Python objects. A
:class:`Profile` of the type it decodes into gives the worst cost per
payload byte (``amplification``), so a payload of up to ``MAX_DECODED /
amplification`` bytes (4-5 MiB for most contracts) cannot exceed it and is
decoded at once; a larger one is walked first, element by element, with a
conservative cost per element (an upper bound of what msgspec allocates for
it), and refused with ``IntegrityError`` as soon as the sum passes the bound,
before anything is decoded. Runs of fixed-size scalars (lists of floats, of
small ints) are costed in one slice operation, so a legitimate large chunk is
walked at C speed; the walk itself is bounded by the same budget.

Costs are CPython 3.11's object sizes (``sys.getsizeof``) rounded up to the
allocator's 16-byte blocks, with some slack: an int 28-36 bytes (48 here), a
float 24, a str 49-80 plus its characters, a list 56 plus 8 per item, a dict
64 empty and at most 224 + 60 per item, a set 216 and at most 150 per item,
plus 8 for the reference from its container. Measured against ``tracemalloc``
for the shapes in tests/test_decode_bounds.py, the estimate is 1.0-2.6 times
what decoding takes.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import msgspec
import msgspec.inspect as mi

from warmstart.errors import IntegrityError

__all__ = ()

#: Bytes of Python objects decoding one payload may build: one chunk, one manifest.
MAX_DECODED = 512 * 1024 * 1024
#: Containers nested deeper than this are refused (msgspec raises RecursionError
#: past the interpreter's limit; nothing warmstart writes nests this deep).
MAX_DEPTH = 500
#: Keys one chunk may declare, checked from its header before anything is
#: decoded. Chunks are cut far below it (at most 32,768 entries); a few million
#: empty entries in a 5 MB chunk cost 276 MiB at load before it (issue 17).
MAX_CHUNK_ENTRIES = 1 << 20
#: Elements the walk looks at one by one before it refuses a payload (runs
#: of fixed-size scalars are costed at once and not counted): bounds its time
#: (about 1 us an element on a loaded shared core) whatever the payload.
MAX_STEPS = 2_000_000
_SLOT = 8  # the reference a container holds to each item
_DICT_EMPTY = 72
_DICT_BASE = 240
_DICT_ITEM = 60
_LIST = 72
_SET = 224
_SET_ITEM = 150
_STR = 80  # header of a str of any kind (ASCII 49, UCS-4 76), rounded up
_NUMBER = 48  # an int up to 2**64 (36 bytes; floats take 24), in its 16-byte block
_DECIMAL = 112  # a Decimal, UUID, datetime... built from a string or a number
_FACTORY = 256  # what a default_factory is taken to build (an empty set is 216)


class Profile(NamedTuple):
    """The worst cost of each kind of msgpack element for one target type."""

    small_int: int  # positive fixint, uint8, nil, bool: cached objects unless converted
    number: int  # any other int, a float
    string: int  # a non-empty str or bin, plus its length
    array: int  # a list, or a set where the type has sets
    array_item: int  # what each item adds besides its slot
    map_min: int  # a Struct (or dataclass) built from a map, default factories included
    #: Every map becomes a Struct: no dict is built and map keys (field
    #: names) are matched, not materialised.
    structs_only: bool = False

    def map_cost(self, count: int) -> int:
        """What a map of ``count`` items builds (its items counted apart)."""
        if self.structs_only:
            return _SLOT + self.map_min
        as_dict = _DICT_EMPTY if count == 0 else _DICT_BASE + _DICT_ITEM * count
        return _SLOT + max(as_dict, self.map_min)

    @property
    def amplification(self) -> int:
        """Worst bytes of objects per payload byte, over the smallest encodings."""
        return max(
            self.small_int,
            self.number,  # a negative fixint (-32..-6) is one byte
            (_SLOT + self.string + 1) // 2,  # a one-character string
            _SLOT + self.array,  # an empty array (one byte)
            (_SLOT + self.array + self.array_item + self.small_int) // 2,
            self.map_cost(0),  # an empty map
            (self.map_cost(1) + 2 * self.small_int) // 3,
        )

    @property
    def quick(self) -> int:
        """Payloads up to this many bytes cannot exceed :data:`MAX_DECODED`: not walked."""
        return MAX_DECODED // self.amplification


#: Decoding without a type (``Any`` everywhere): msgpack's own kinds only.
UNTYPED = Profile(
    small_int=_SLOT,
    number=_SLOT + _NUMBER,
    string=_SLOT + _STR,
    array=_LIST,
    array_item=0,
    map_min=0,
    structs_only=False,
)


def profile_of(tp: Any) -> Profile:
    """The profile of decoding into ``tp`` (a Struct, a container of them, ``Any``...).

    >>> import msgspec
    >>> class Point(msgspec.Struct):
    ...     x: float
    ...     tags: set[str] = set()
    >>> p = profile_of(Point)
    >>> p.array, p.small_int  # sets reachable; a small int may become a float
    (224, 40)
    """
    kinds: set[str] = set()
    struct_cost = 0
    seen: set[Any] = set()
    stack = [mi.type_info(tp)]
    while stack:
        t = stack.pop()
        if isinstance(t, (mi.StructType, mi.DataclassType)):
            if t.cls in seen:
                continue
            seen.add(t.cls)
            struct_cost = max(struct_cost, _instance_cost(t))
        kind = _KINDS.get(type(t))
        if kind is not None:
            kinds.add(kind)
        stack.extend(_inner(t))
    converted = (
        _DECIMAL if "object" in kinds else 32 if "float" in kinds else 0
    )  # what a small int may turn into
    return Profile(
        small_int=_SLOT + converted,
        number=_SLOT + max(_NUMBER, converted),
        string=_SLOT + (_DECIMAL if "object" in kinds else _STR),
        array=_SET if "set" in kinds else _LIST,
        array_item=_SET_ITEM - _SLOT if "set" in kinds else 0,
        map_min=struct_cost,
        structs_only="dict" not in kinds,
    )


_CONVERTED = (mi.DecimalType, mi.UUIDType, mi.DateTimeType, mi.DateType, mi.TimeType)
#: Types whose presence changes a profile: sets (costly), floats and objects
#: built from a small int or a string (costlier than the cached int or the str).
_KINDS: dict[type, str] = {
    mi.SetType: "set",
    mi.FrozenSetType: "set",
    mi.FloatType: "float",
    mi.TimeDeltaType: "object",
    **dict.fromkeys(_CONVERTED, "object"),
    # Types that build dicts from maps (Any decodes maps as dicts).
    mi.DictType: "dict",
    mi.AnyType: "dict",
    mi.TypedDictType: "dict",
    mi.DataclassType: "dict",
}


def _inner(t: Any) -> list[Any]:
    """The types directly inside an inspected type."""
    if isinstance(t, (mi.StructType, mi.DataclassType, mi.TypedDictType, mi.NamedTupleType)):
        return [f.type for f in t.fields]
    if isinstance(t, (mi.ListType, mi.VarTupleType, mi.SetType, mi.FrozenSetType)):
        return [t.item_type]
    if isinstance(t, mi.TupleType):
        return list(t.item_types)
    if isinstance(t, mi.DictType):
        return [t.key_type, t.value_type]
    if isinstance(t, mi.UnionType):
        return list(t.types)
    return []


def _instance_cost(t: Any) -> int:
    """Bytes of one instance built from an empty map: object, fields, defaults it copies."""
    fields = list(t.fields)
    cost = 32 + _SLOT * len(fields)  # header, GC header, one slot per field
    if isinstance(t, mi.DataclassType):
        cost += _DICT_BASE + _DICT_ITEM * len(fields)  # the instance __dict__
    for f in fields:
        factory = getattr(f, "default_factory", msgspec.NODEFAULT)
        default = getattr(f, "default", msgspec.NODEFAULT)
        # msgspec copies an empty list/dict/set/bytearray default per instance.
        if factory is not msgspec.NODEFAULT or isinstance(default, (list, dict, set, bytearray)):
            cost += _FACTORY
    return cost


# -- the envelope of a chunk payload --------------------------------------------------

_INT_SIZES = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}


def chunk_entries(payload: bytes | memoryview, where: str, expected: int | None = None) -> int:
    """How many keys a chunk payload ``[sequence, keys, ...]`` declares, read from its header.

    Args:
        expected: the count its manifest records, when known.

    Raises:
        IntegrityError: the payload does not start like a chunk, declares more
            than :data:`MAX_CHUNK_ENTRIES` keys, or not ``expected`` ones.
    """
    view = memoryview(payload)
    start = bytes(view[:8]).hex() or "nothing"
    if len(view) < 3 or view[0] != 0x95:
        msg = (
            f"Expected a chunk payload [sequence, keys, values, deleted, expires] in {where}, "
            f"got malformed data starting {start}"
        )
        raise IntegrityError(msg)
    first = view[1]
    if first <= 0x7F or first >= 0xE0:  # a fixint sequence
        pos = 2
    elif first in _INT_SIZES:
        pos = 2 + _INT_SIZES[first]
    else:
        msg = (
            f"Expected an integer sequence at the start of the chunk payload in {where}, "
            f"got malformed data starting {start}"
        )
        raise IntegrityError(msg)
    count = _array_length(view, pos)
    if count is None:
        msg = (
            f"Expected the chunk payload's keys as an array in {where}, got malformed data "
            f"starting {start}"
        )
        raise IntegrityError(msg)
    if count > MAX_CHUNK_ENTRIES:
        msg = (
            f"Expected at most {MAX_CHUNK_ENTRIES} entries in {where}, its payload declares "
            f"{count}: refused before decoding"
        )
        raise IntegrityError(msg)
    if expected is not None and count != expected:
        msg = (
            f"Expected {expected} entries in {where} as its manifest says, its payload "
            f"declares {count}"
        )
        raise IntegrityError(msg)
    return count


def _array_length(view: memoryview, pos: int) -> int | None:
    if pos >= len(view):
        return None
    b = view[pos]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F
    if b == 0xDC and pos + 3 <= len(view):
        return int(struct.unpack_from(">H", view, pos + 1)[0])
    if b == 0xDD and pos + 5 <= len(view):
        return int(struct.unpack_from(">I", view, pos + 1)[0])
    return None


# -- the walk ---------------------------------------------------------------------------

# msgpack first bytes 0xc0-0xdf: (kind, bytes of the element or of its length field).
_NIL, _FIXED, _BYTES, _EXT, _ARRAY, _MAP, _BAD = range(7)
_TYPES: dict[int, tuple[int, int]] = {
    0xC0: (_NIL, 1),
    0xC1: (_BAD, 0),
    0xC2: (_NIL, 1),
    0xC3: (_NIL, 1),
    0xC4: (_BYTES, 1),
    0xC5: (_BYTES, 2),
    0xC6: (_BYTES, 4),
    0xC7: (_EXT, 1),
    0xC8: (_EXT, 2),
    0xC9: (_EXT, 4),
    0xCA: (_FIXED, 5),
    0xCB: (_FIXED, 9),
    0xCC: (_NIL, 2),  # uint8: 0-255, cached like a fixint
    0xCD: (_FIXED, 3),
    0xCE: (_FIXED, 5),
    0xCF: (_FIXED, 9),
    0xD0: (_FIXED, 2),
    0xD1: (_FIXED, 3),
    0xD2: (_FIXED, 5),
    0xD3: (_FIXED, 9),
    0xD4: (_FIXED, 3),  # fixext 1-16: an Ext or a timestamp
    0xD5: (_FIXED, 4),
    0xD6: (_FIXED, 6),
    0xD7: (_FIXED, 10),
    0xD8: (_FIXED, 18),
    0xD9: (_BYTES, 1),
    0xDA: (_BYTES, 2),
    0xDB: (_BYTES, 4),
    0xDC: (_ARRAY, 2),
    0xDD: (_ARRAY, 4),
    0xDE: (_MAP, 2),
    0xDF: (_MAP, 4),
}
_LENGTH = {1: ">B", 2: ">H", 4: ">I"}
#: Bytes that are a whole element on their own and cost no more than a small int.
_ONE_BYTE_SMALL = bytes([*range(0x80), 0xC0, 0xC2, 0xC3])
_ONE_BYTE_NUMBERS = bytes(range(0xE0, 0x100))


def check(payload: bytes | memoryview, profile: Profile, where: str) -> None:
    """Refuse a payload whose decoding could build more than :data:`MAX_DECODED` bytes.

    Raises:
        IntegrityError: it would cost more (with the estimate), nests deeper
            than :data:`MAX_DEPTH`, or is malformed where the walk can tell.
    """
    if len(payload) <= profile.quick:
        return
    _Walk(bytes(payload), profile, where).element(0, 0)  # raises past the bound


def estimate(payload: bytes | memoryview, profile: Profile, where: str = "a payload") -> int:
    """Upper bound of the bytes decoding ``payload`` builds (walked in full; for tests)."""
    walk = _Walk(bytes(payload), profile, where)
    walk.element(0, 0)
    return walk.total


def _too_costly(where: str, cost: int) -> IntegrityError:
    return IntegrityError(
        f"Expected a payload that decodes within {MAX_DECODED >> 20} MiB, {where} would "
        f"build {cost >> 20} MiB or more of objects: damaged or hostile, refused before decoding"
    )


class _Walk:
    """One walk over a payload: the budget and the step count are shared by nested runs."""

    def __init__(self, data: bytes, profile: Profile, where: str) -> None:
        self.data = data
        self.profile = profile
        self.where = where
        self.steps = 0
        self.total = 0  # bytes counted so far, over the whole payload

    def charge(self, cost: int) -> None:
        self.total += cost
        if self.total > MAX_DECODED:
            raise _too_costly(self.where, self.total)

    def element(self, pos: int, depth: int) -> int:  # noqa: C901, PLR0912, PLR0915
        """Walk the one element at ``pos`` and return where it ends, charging as it goes."""
        data, end, profile, where = self.data, len(self.data), self.profile, self.where
        small, number, string = profile.small_int, profile.number, profile.string
        array, array_item = profile.array, profile.array_item
        free_keys = profile.structs_only
        # Elements still to read at each open level: n for an array, -2n for a
        # map (counted up to 0: an even count is a key).
        remaining = [1]
        while remaining:
            top = remaining[-1]
            if top == 0:
                remaining.pop()
                continue
            if top > 0:
                remaining[-1] = top - 1
                key = False
            else:
                remaining[-1] = top + 1
                key = free_keys and not top & 1
            self.steps += 1
            if pos >= end:
                msg = f"Expected more bytes in {where}: the payload is truncated or malformed"
                raise IntegrityError(msg)
            if self.steps > MAX_STEPS:
                msg = (
                    f"Expected at most {MAX_STEPS} elements to check in {where}, it holds "
                    f"more: refused before decoding"
                )
                raise IntegrityError(msg)
            b = data[pos]
            count = -1  # items of a container opened here
            is_map = False
            cost = 0
            if b <= 0x7F:
                cost = small
                pos += 1
            elif b >= 0xE0:
                cost = number
                pos += 1
            elif b >= 0xA0 and b <= 0xBF:  # fixstr
                length = b & 0x1F
                cost = _SLOT if length == 0 else string + length
                pos += 1 + length
            elif b <= 0x8F:  # fixmap
                count, is_map = b & 0x0F, True
                pos += 1
            elif b <= 0x9F:  # fixarray
                count = b & 0x0F
                pos += 1
            else:
                kind, size = _TYPES[b]
                if kind == _NIL:
                    cost = small
                    pos += size
                elif kind == _FIXED:
                    cost = number
                    pos += size
                elif kind == _BAD:
                    msg = f"Expected msgpack in {where}, found the never-used byte 0xc1"
                    raise IntegrityError(msg)
                else:
                    if pos + 1 + size > end:
                        msg = f"Expected more bytes in {where}: the payload is truncated"
                        raise IntegrityError(msg)
                    (n,) = struct.unpack_from(_LENGTH[size], data, pos + 1)
                    pos += 1 + size
                    if kind == _BYTES:
                        cost = string + n
                        pos += n
                    elif kind == _EXT:
                        cost = string + n
                        pos += 1 + n
                    else:
                        count, is_map = n, kind == _MAP
            if count >= 0:
                level = depth + len(remaining)
                if level > MAX_DEPTH:
                    msg = f"Expected containers nested at most {MAX_DEPTH} deep in {where}"
                    raise IntegrityError(msg)
                if is_map:
                    cost = profile.map_cost(count)
                    remaining.append(-2 * count)
                else:
                    cost = _SLOT + array + array_item * count
                    if count >= 2 and level < _FAST_DEPTH:
                        self.charge(cost)
                        cost = 0
                        count, pos = self.items(pos, count, level)
                    remaining.append(count)
            if not key:  # a Struct's field name is matched, never built
                self.charge(cost)
        return pos

    def items(self, pos: int, count: int, depth: int) -> tuple[int, int]:
        """An array's items at ``pos``: all of them at once when they repeat one element.

        Returns (items left to walk one by one, where they start). The first
        item is walked; if the ``count`` items are ``count`` copies of it
        (``bytes.count`` of non-overlapping copies, in C), they are charged
        at once; a list of floats or of empty maps costs one step.
        """
        run = _uniform_run(self.data, pos, count, self.profile)
        if run is not None:  # fixed-size scalars (floats, ints): one slice check
            self.charge(run[0])
            return 0, run[1]
        before = self.total
        first_end = self.element(pos, depth)
        first_cost = self.total - before
        size = first_end - pos
        stop = pos + size * count
        if stop <= len(self.data) and self.data.count(self.data[pos:first_end], pos, stop) == count:
            self.charge(first_cost * (count - 1))
            return 0, stop
        return count - 1, first_end


#: Arrays nested deeper than this are walked item by item (no repeated-item shortcut),
#: which keeps the shortcut's recursion far from the interpreter's limit.
_FAST_DEPTH = 64


def _uniform_run(data: bytes, pos: int, count: int, profile: Profile) -> tuple[int, int] | None:
    """(cost, end) when the ``count`` items at ``pos`` are fixed-size scalars of one kind."""
    first = data[pos] if pos < len(data) else 0xC1
    if first <= 0x7F or first in (0xC0, 0xC2, 0xC3) or first >= 0xE0:
        run = data[pos : pos + count]
        if len(run) != count or run.translate(None, _ONE_BYTE_SMALL + _ONE_BYTE_NUMBERS):
            return None
        each = profile.number if run.translate(None, _ONE_BYTE_SMALL) else profile.small_int
        return count * each, pos + count
    kind, size = _TYPES.get(first, (_BAD, 0))
    stop = pos + size * count
    if kind not in (_FIXED, _NIL) or size < 2 or stop > len(data):
        return None
    if data[pos:stop:size].count(first) != count:
        return None
    return count * (profile.number if kind == _FIXED else profile.small_int), stop
