"""Push generations to a remote and pull them back, chunk-incrementally and safely.

**Push** reads the remote head (generation ``H``), ships the chunks of the
local generation that ``H``'s manifest does not already reference and the
remote lacks, then the manifest renumbered ``H + 1``, and last moves the head
from ``H`` to ``H + 1`` with a compare-and-set that also requires every chunk
it relied on to exist. Of two pushers that read the same ``H``, one wins, the
other gets :class:`~warmstart.remote._errors.RemoteConflictError` and published
nothing. The head only ever names a complete generation and only moves
forward. Frames are never re-encoded: digests and MACs made by the writing
store travel as they are, and **pull** verifies every chunk (digest, and MAC
when the store is keyed) and the manifest before it commits anything, in one
local write transaction. Remote generation numbers count the pushes of a
namespace, whatever store they came from; the layout is in ``_layout.py``.

**Retention and garbage collection**: the head record lists the retained
generations (``keep``, by default the store's). After a push, the manifests
that fell out of that list, and every chunk no retained generation references,
are deleted. On Redis the deletion is atomic with a check that the head did
not move, and a push's head update is atomic with its existence checks, so
nothing else is needed. Object stores and filesystems have neither, so there
a key is deleted only once it is older than ``grace`` (a push in flight writes
or refreshes what it relies on, and must finish within ``grace / 2``).

>>> import msgspec, pathlib, tempfile
>>> from warmstart import Contract, Store, TrackedDict
>>> class Row(msgspec.Struct):
...     name: str
>>> ROWS = Contract("row", Row, key=int)
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> remote = (tmp / "remote").as_uri()
>>> rows = TrackedDict({i: Row(f"r{i}") for i in range(5000)})
>>> with Store(tmp / "a") as a:
...     _ = a.save("svc", {"rows": (ROWS, rows)})
...     first = push(a, remote, "svc")
...     rows[7] = Row("changed")
...     _ = a.save("svc", {"rows": (ROWS, rows)})
...     second = push(a, remote, "svc")
>>> first.generation, second.generation, second.chunks_shipped, second.chunks_skipped > 0
(1, 2, 1, True)
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import msgspec

from warmstart.codec import Codec
from warmstart.errors import CheckpointNotFoundError, IntegrityError, StoreError
from warmstart.manifest import ChunkRef, Manifest, encode_manifest
from warmstart.progress import Meter, OnProgress
from warmstart.remote._base import MAX_OBJECT
from warmstart.remote._errors import RemoteConflictError, RemoteError
from warmstart.remote._layout import (
    RESERVED,
    Layout,
    batches,
    check_cancel,
    check_head,
    check_keyed,
    decode_head,
    manifest_name,
    namespace_dir,
    opened,
    remote_manifest,
    unique_refs,
)
from warmstart.remote._reports import PullReport, PushReport, RemoteHead
from warmstart.store import Inbound, Store

if TYPE_CHECKING:
    from warmstart.remote._protocol import Remote

__all__ = (
    "DEFAULT_GRACE",
    "PULLED_FROM",
    "PUSHED_FROM",
    "collect_remote",
    "list_remote",
    "namespace_dir",
    "pull",
    "push",
)


def __dir__() -> tuple[str, ...]:
    return __all__


log = logging.getLogger("warmstart.remote")

#: Seconds an unreferenced object must age before garbage collection of an
#: object store or filesystem remote deletes it (Redis needs none).
DEFAULT_GRACE = 900.0
#: Tag a pushed manifest carries: ``host:local generation``.
PUSHED_FROM = "pushed-from"
#: Tag a pulled manifest carries: ``remote URL#remote generation``.
PULLED_FROM = "pulled-from"
_GEN = struct.Struct(">Q")
#: How often a push re-writes what a concurrent collection removed, or a pull
#: re-fetches what a concurrent local save swept, before giving up.
_ATTEMPTS = 3
#: Errors a best-effort clean-up may meet; it leaves the rest to the next collection.
_TOLERATED = (RemoteError, IntegrityError, StoreError)


# -- push ---------------------------------------------------------------------


def push(
    store: Store,
    remote: Remote | str,
    namespace: str,
    *,
    generation: int | None = None,
    keep: int | None = None,
    grace: float = DEFAULT_GRACE,
    force: bool = False,
    progress: OnProgress | None = None,
) -> PushReport:
    """Publish a generation of ``namespace`` as the remote's new head.

    Ships only the chunks the remote lacks, then the manifest, then moves the
    remote head with a compare-and-set (see the module docstring).

    Args:
        store: the local store (read-only is fine).
        remote: a :class:`~warmstart.remote.Remote` or a URL for
            :func:`~warmstart.remote.open_remote`.
        namespace: the namespace, the same locally and on the remote.
        generation: the local generation to push (the head by default).
        keep: generations the remote retains (the store's ``keep`` by default).
        grace: seconds an unreferenced object must age before the garbage
            collection that follows the push deletes it (object stores and
            files; Redis deletes at once, atomically).
        force: push even when the remote head was saved later than this generation.
        progress: called as chunks go, with a :class:`~warmstart.progress.Progress`.

    Returns:
        A :class:`PushReport`.

    Raises:
        RemoteConflictError: another writer moved the remote head first;
            nothing of this push is visible (push again to publish on top).
        RemoteUnavailableError: the remote is unreachable or timed out.
        CheckpointNotFoundError: no such local namespace or generation.
        IntegrityError: the local generation is damaged, or the remote head
            does not verify with this store's codec (another secret).
    """
    keep = store.keep if keep is None else keep
    if keep < 1:
        msg = f"Expected keep >= 1, got {keep}"
        raise ValueError(msg)
    with opened(remote) as rem:
        return _push(store, rem, namespace, generation, keep, grace, force, progress, None)


def _push(
    store: Store,
    remote: Remote,
    namespace: str,
    generation: int | None,
    keep: int,
    grace: float,
    force: bool,
    progress: OnProgress | None,
    cancel: threading.Event | None,
) -> PushReport:
    started = time.perf_counter()
    layout = Layout(namespace)
    manifest = store.manifest(namespace, generation)
    identity = manifest.signature()
    head_raw = remote.get_head(layout.head)
    head = None if head_raw is None else decode_head(head_raw, f"{layout.head!r} on {remote.url}")

    def report(status: Literal["pushed", "present", "behind"], **counts: Any) -> PushReport:
        return PushReport(
            namespace=namespace,
            remote=remote.url,
            status=status,
            generation=counts.pop("generation", head.generation if head else 0),
            local_generation=manifest.generation,
            seconds=time.perf_counter() - started,
            **counts,
        )

    on_remote: set[bytes] = set()
    if head is not None:
        check_head(head, layout, remote.url)
        check_keyed(head, store.codec, remote.url)
        if head.signature == identity:
            return report("present")
        if not force and manifest.created_at < head.created_at:
            log.info(
                "push of %r skipped: remote generation %d (from %s) is newer",
                namespace,
                head.generation,
                head.host,
                extra={"namespace": namespace, "remote": remote.url},
            )
            return report("behind")
        # The head's chunks exist as long as the head does (which the swap
        # checks); every other chunk is checked, or written.
        on_remote = remote_manifest(remote, layout, store.codec, head.manifest).digests()
    refs = unique_refs(manifest)
    todo = [r for r in refs if r.digest not in on_remote]
    ship = _to_ship(remote, layout, todo, grace)
    shipping = {r.digest for r in ship}
    meter = Meter(progress, "push", sum(r.stored_bytes for r in refs), len(refs))
    remote_has = [r for r in refs if r.digest not in shipping]
    meter.skip(sum(r.stored_bytes for r in remote_has), len(remote_has))
    meter.emit()
    # Overwriting refreshes an old copy's age on stores without atomic checks.
    shipped = _upload(store, remote, layout, ship, not remote.atomic, meter, cancel)
    new = _next_head(store, manifest, head, identity, keep)
    remote.put({layout.manifest(new.head.manifest): new.raw}, overwrite=not remote.atomic)
    shipped += _publish(store, remote, layout, head_raw, new, todo, shipped, cancel)
    swept = _collect_after_push(remote, layout, store.codec, head, new.head, new.encoded, grace)
    new_head = new.head
    log.info(
        "pushed %r generation %d to %s as generation %d: %d chunks, %d bytes",
        namespace,
        manifest.generation,
        remote.url,
        new_head.generation,
        len(shipped),
        sum(r.stored_bytes for r in shipped),
        extra={"namespace": namespace, "remote": remote.url, "generation": new_head.generation},
    )
    return report(
        "pushed",
        generation=new_head.generation,
        chunks_shipped=len(shipped),
        bytes_shipped=sum(r.stored_bytes for r in shipped),
        chunks_skipped=len(refs) - len(ship),
        swept=swept,
    )


def _to_ship(remote: Remote, layout: Layout, todo: list[ChunkRef], grace: float) -> list[ChunkRef]:
    """The chunks the remote lacks, or (without atomic checks) holds too old to rely on."""
    if not todo:
        return []
    found = remote.stat([layout.chunk(r.digest) for r in todo])
    now = time.time()

    def usable(key: str) -> bool:
        if key not in found:
            return False
        if remote.atomic:
            return True  # the head swap checks it exists, atomically
        # Without atomic checks, a present chunk counts only while young enough
        # that garbage collection cannot take it before this push ends.
        modified = found[key]
        return modified is not None and now - modified < grace / 2

    return [r for r in todo if not usable(layout.chunk(r.digest))]


class _Next(NamedTuple):
    """What a push publishes: the manifest as stored remotely, and the head naming it."""

    raw: bytes
    head: RemoteHead
    encoded: bytes
    local: int


def _next_head(
    store: Store, manifest: Manifest, head: RemoteHead | None, identity: str, keep: int
) -> _Next:
    """The manifest as stored remotely (renumbered ``head + 1``) and the head naming it."""
    number = (head.generation if head else 0) + 1
    pushed = msgspec.structs.replace(
        manifest,
        generation=number,
        parent=head.generation if head else None,
        tags={**manifest.tags, PUSHED_FROM: f"{socket.gethostname()}:{manifest.generation}"},
    )
    raw = encode_manifest(store.codec, pushed)
    name = manifest_name(number, raw[:16])
    new = RemoteHead(
        namespace=manifest.namespace,
        generation=number,
        lineage=manifest.lineage,
        manifest=name,
        created_at=manifest.created_at,
        pushed_at=time.time(),
        host=socket.gethostname(),
        keyed=store.codec.keyed,
        signature=identity,
        entries=sum(s.entries for s in manifest.sections),
        stored_bytes=manifest.stored_bytes,
        history=((number, name), *(head.history if head else ()))[:keep],
    )
    return _Next(raw, new, msgspec.msgpack.encode(new), manifest.generation)


def _publish(
    store: Store,
    remote: Remote,
    layout: Layout,
    head_raw: bytes | None,
    new: _Next,
    todo: list[ChunkRef],
    shipped: list[ChunkRef],
    cancel: threading.Event | None,
) -> list[ChunkRef]:
    """Move the head from ``head_raw`` to ``new``; return chunks written again on the way."""
    manifest_key = layout.manifest(new.head.manifest)
    require = [*(layout.chunk(r.digest) for r in todo), manifest_key]
    again: list[ChunkRef] = []
    for _ in range(_ATTEMPTS):
        check_cancel(cancel)
        try:
            lacking = remote.swap_head(layout.head, head_raw, new.encoded, require=require)
        except RemoteConflictError as exc:
            written = {layout.chunk(r.digest) for r in shipped + again} | {manifest_key}
            _abandon(remote, layout, store.codec, written)
            raise _conflict(remote, layout, head_raw, new.local) from exc
        if not lacking:
            return again
        # A concurrent garbage collection removed what this push relies on:
        # write it again (the head did not move, so nothing is visible yet).
        lost = [r for r in todo if layout.chunk(r.digest) in lacking]
        again += _upload(store, remote, layout, lost, True, None, cancel)
        remote.put({manifest_key: new.raw}, overwrite=True)
    msg = (
        f"Expected to publish {layout.namespace!r} on {remote.url}, but concurrent garbage "
        f"collection removed its chunks {_ATTEMPTS} times; push again"
    )
    raise RemoteError(msg)


def _upload(
    store: Store,
    remote: Remote,
    layout: Layout,
    refs: list[ChunkRef],
    overwrite: bool,
    meter: Meter | None,
    cancel: threading.Event | None,
) -> list[ChunkRef]:
    """Send chunk frames from the local store, verified first; return those written."""
    written: list[ChunkRef] = []
    for batch in batches(refs):
        check_cancel(cancel)
        frames = _local_frames(store, layout.namespace, batch)
        done = remote.put(
            {layout.chunk(r.digest): f for r, f in zip(batch, frames)}, overwrite=overwrite
        )
        for ref in batch:
            if layout.chunk(ref.digest) in done:
                written.append(ref)
            if meter is not None:
                meter.advance(ref.stored_bytes)
    return written


def _local_frames(store: Store, namespace: str, refs: list[ChunkRef]) -> list[bytes]:
    """Copies of the frames of ``refs``, each verified (digest, MAC, size)."""
    out = []
    with store.read() as reader:
        hint = "the generation was collected while pushing: push again"
        for _, frame in reader.frames(namespace, refs, missing=CheckpointNotFoundError, hint=hint):
            out.append(bytes(frame))
    return out


def _conflict(
    remote: Remote, layout: Layout, read_raw: bytes | None, local: int
) -> RemoteConflictError:
    """The error a losing pusher gets, naming the head that won."""
    try:
        read = None if read_raw is None else decode_head(read_raw, remote.url)
        raw = remote.get_head(layout.head)
        now = None if raw is None else decode_head(raw, remote.url)
    except (RemoteError, IntegrityError):
        read = now = None
    was = f"generation {read.generation}" if read else "no head"
    found = (
        f"generation {now.generation} pushed by {now.host} at {time.ctime(now.pushed_at)}"
        if now
        else "a head that changed again"
    )
    msg = (
        f"Expected the remote head of {layout.namespace!r} on {remote.url} at {was}, found "
        f"{found}; local generation {local} was not published: pull, or push again"
    )
    return RemoteConflictError(msg)


def _abandon(remote: Remote, layout: Layout, codec: Codec, written: set[str]) -> None:
    """After losing a race on an atomic remote, delete what only this push wrote."""
    if not remote.atomic or not written:
        return
    with contextlib.suppress(*_TOLERATED):
        raw = remote.get_head(layout.head)
        if raw is None:
            return
        head = decode_head(raw, remote.url)
        # Keys are chunks (named by digest) and this push's manifest (in no history).
        _collect(remote, layout, codec, raw, head, 0.0, dict.fromkeys(written))


# -- retention and garbage collection -----------------------------------------


def _referenced(
    remote: Remote, layout: Layout, codec: Codec, head: RemoteHead | None
) -> set[bytes] | None:
    """Digests the retained generations reference, or None if one cannot be read."""
    referenced: set[bytes] = set()
    for _, name in head.history if head else ():
        try:
            referenced |= remote_manifest(remote, layout, codec, name).digests()
        except IntegrityError as exc:
            log.warning("%s: %s; garbage collection skipped", remote.url, exc)
            return None
    return referenced


def _collect(
    remote: Remote,
    layout: Layout,
    codec: Codec,
    head_raw: bytes | None,
    head: RemoteHead | None,
    grace: float,
    candidates: dict[str, float | None] | None,
) -> int:
    """Delete manifests and chunks no retained generation needs; return how many."""
    referenced = _referenced(remote, layout, codec, head)
    if referenced is None:
        return 0
    retained = {name for _, name in head.history} if head else set()
    if candidates is None:
        candidates = remote.list(layout.dir)
    now = time.time()
    doomed = []
    for key, modified in candidates.items():
        parsed = layout.parse(key)
        if parsed is None:
            continue
        kind, name = parsed
        if kind == "manifests":
            garbage = name not in retained
        else:
            try:
                garbage = bytes.fromhex(name) not in referenced
            except ValueError:
                continue  # not ours
        old = remote.atomic or (modified is not None and now - modified > grace)
        if garbage and old:
            doomed.append(key)
    if not doomed:
        return 0
    try:
        remote.delete(doomed, unless_moved=(layout.head, head_raw))
    except RemoteConflictError:
        return 0  # a push moved the head: it collects after itself
    return len(doomed)


def _collect_after_push(
    remote: Remote,
    layout: Layout,
    codec: Codec,
    old: RemoteHead | None,
    new: RemoteHead,
    encoded: bytes,
    grace: float,
) -> int:
    """Retention after a push: never fails the push (it is published already)."""
    try:
        if not remote.atomic:
            return _collect(remote, layout, codec, encoded, new, grace, None)
        # Redis: only what just fell out of retention, no listing of the keyspace.
        kept = {name for _, name in new.history}
        dropped = [name for _, name in (old.history if old else ()) if name not in kept]
        if not dropped:
            return 0
        candidates: dict[str, float | None] = {layout.manifest(n): None for n in dropped}
        for name in dropped:
            with contextlib.suppress(IntegrityError):
                digests = remote_manifest(remote, layout, codec, name).digests()
                candidates.update((layout.chunk(d), None) for d in digests)
        return _collect(remote, layout, codec, encoded, new, grace, candidates)
    except _TOLERATED as exc:
        log.warning("retention on %s after a push failed: %s", remote.url, exc)
        return 0


def collect_remote(
    remote: Remote | str,
    namespace: str,
    *,
    secret: bytes | None = None,
    grace: float = DEFAULT_GRACE,
) -> int:
    """Delete the remote objects of ``namespace`` that no retained generation needs.

    Pushes already collect what falls out of retention; this also removes what
    interrupted or losing pushes left behind. A retained generation's chunks
    are never deleted. On object stores and filesystems only objects older
    than ``grace`` seconds go (a push in flight may rely on younger ones).

    Args:
        secret: the stores' secret, to verify keyed manifests.

    Returns:
        The number of objects deleted.
    """
    codec = Codec(secret=secret)
    layout = Layout(namespace)
    with opened(remote) as rem:
        raw = rem.get_head(layout.head)
        head = None if raw is None else decode_head(raw, rem.url)
        return _collect(rem, layout, codec, raw, head, grace, None)


def list_remote(remote: Remote | str) -> list[RemoteHead]:
    """The head of every namespace on a remote, sorted by namespace.

    >>> import tempfile
    >>> list_remote("file://" + tempfile.mkdtemp())
    []
    """
    marker = f"/{RESERVED}/"
    with opened(remote) as rem:
        directories = set()
        for key in rem.list(""):
            # "@" is escaped in namespace parts: the first "/@ws/" ends the namespace.
            directory, found, rest = key.partition(marker)
            if found and (rest == "head" or rest.startswith("head/")):
                directories.add(directory + marker)
        heads = []
        for directory in sorted(directories):
            # A long part is stored hashed: the head record names the namespace.
            try:
                raw = rem.get_head(directory + "head")
            except ValueError:
                continue  # not a key this library wrote
            if raw is None:
                continue
            head = decode_head(raw, rem.url)
            try:
                ours = namespace_dir(head.namespace) == directory
            except ValueError:
                ours = False
            if not ours:
                log.warning(
                    "%s: the head under %r names namespace %r: skipped",
                    rem.url,
                    directory,
                    head.namespace,
                )
                continue
            heads.append(head)
    return sorted(heads, key=lambda h: h.namespace)


# -- pull ---------------------------------------------------------------------


def pull(
    store: Store,
    remote: Remote | str,
    namespace: str,
    *,
    if_newer: bool = False,
    progress: OnProgress | None = None,
) -> PullReport:
    """Fetch the remote head of ``namespace`` and commit it as the local head.

    Chunks the local store already has are not fetched. Every fetched chunk
    is verified (digest and size, and MAC when the store is keyed), and the
    manifest too, before anything is written; then chunks, manifest and head
    are committed in one write transaction. The new local generation keeps
    the remote number when that is above the local head, else takes head + 1
    (a local head never goes backwards); its manifest keeps the writer's
    ``created_at``, watermark and tags, plus ``pulled-from``.

    Args:
        if_newer: do nothing (``"skipped"``) when the local head was saved at
            or after the remote head.
        progress: called as chunks arrive, with a :class:`~warmstart.progress.Progress`.

    Returns:
        A :class:`PullReport`.

    Raises:
        CheckpointNotFoundError: the remote holds nothing for ``namespace``.
        IntegrityError: a chunk or the manifest is damaged, tampered with,
            missing, or keyed differently from this store.
        RemoteUnavailableError: the remote is unreachable or timed out.
    """
    with opened(remote) as rem:
        return _pull(store, rem, namespace, if_newer, progress, None)


class _SupersededError(IntegrityError):
    """A chunk of the head being pulled is gone because newer pushes retired it."""


def _pull(
    store: Store,
    remote: Remote,
    namespace: str,
    if_newer: bool,
    progress: OnProgress | None,
    cancel: threading.Event | None,
) -> PullReport:
    # A slow pull may see its generation retired by ``keep`` newer pushes (Redis
    # collects at once): then the newer head is the one to pull.
    for _ in range(_ATTEMPTS - 1):
        try:
            return _pull_head(store, remote, namespace, if_newer, progress, cancel)
        except _SupersededError as exc:
            log.info("pull of %r: %s; pulling the newer head", namespace, exc)
    return _pull_head(store, remote, namespace, if_newer, progress, cancel)


def _pull_head(
    store: Store,
    remote: Remote,
    namespace: str,
    if_newer: bool,
    progress: OnProgress | None,
    cancel: threading.Event | None,
) -> PullReport:
    started = time.perf_counter()
    layout = Layout(namespace)
    raw_head = remote.get_head(layout.head)
    if raw_head is None:
        msg = f"Expected namespace {namespace!r} on {remote.url}, found no head"
        raise CheckpointNotFoundError(msg)
    head = decode_head(raw_head, remote.url)
    check_head(head, layout, remote.url)
    check_keyed(head, store.codec, remote.url)
    try:
        manifest = remote_manifest(remote, layout, store.codec, head.manifest)
    except IntegrityError as exc:
        if remote.get_head(layout.head) != raw_head:
            raise _SupersededError(str(exc)) from exc
        raise
    if (manifest.generation, manifest.lineage, manifest.signature()) != (
        head.generation,
        head.lineage,
        head.signature,
    ):
        msg = f"Expected the manifest of remote head {head.generation} on {remote.url} to match it"
        raise IntegrityError(msg)

    def report(status: Literal["pulled", "present", "skipped"], **counts: Any) -> PullReport:
        return PullReport(
            namespace=namespace,
            remote=remote.url,
            status=status,
            remote_generation=head.generation,
            seconds=time.perf_counter() - started,
            **counts,
        )

    present, local_created, have = _local_state(store, namespace, manifest)
    refs = unique_refs(manifest)
    if present is not None:
        return report("present", generation=present, chunks_skipped=len(refs))
    if if_newer and local_created is not None and local_created >= manifest.created_at:
        return report("skipped", generation=None)
    need = [r for r in refs if r.digest not in have]
    meter = Meter(progress, "pull", sum(r.stored_bytes for r in refs), len(refs))
    local = [r for r in refs if r.digest in have]
    meter.skip(sum(r.stored_bytes for r in local), len(local))
    meter.emit()
    source = f"{remote.url}#{head.generation}"
    inbound = store.inbound(namespace, manifest, tag=PULLED_FROM, source=source)
    outcome, fetched = _fetch_and_commit(
        inbound, store.codec, remote, layout, (head.generation, raw_head), refs, need, meter, cancel
    )
    adopted, generation = outcome
    status: Literal["pulled", "present"] = "pulled" if adopted == "adopted" else "present"
    log.info(
        "pulled %r generation %d from %s as local generation %d: %d chunks fetched",
        namespace,
        head.generation,
        remote.url,
        generation,
        len(fetched),
        extra={"namespace": namespace, "remote": remote.url, "generation": generation},
    )
    sizes = {r.digest: r.stored_bytes for r in refs}
    return report(
        status,
        generation=generation,
        chunks_fetched=len(fetched),
        bytes_fetched=sum(sizes[d] for d in fetched),
        chunks_skipped=len(refs) - len(fetched),
    )


def _fetch_and_commit(
    inbound: Inbound,
    codec: Codec,
    remote: Remote,
    layout: Layout,
    pulled: tuple[int, bytes],
    refs: list[ChunkRef],
    need: list[ChunkRef],
    meter: Meter,
    cancel: threading.Event | None,
) -> tuple[tuple[Literal["adopted", "present"], int], set[bytes]]:
    """Fetch, verify and write ``need`` a batch at a time, then commit: (outcome, fetched).

    As import does, through the store's one inbound path: a pull holds one
    batch in memory (about 8 MiB), not every chunk it lacks (issue 17).
    """
    generation, raw_head = pulled  # the remote head being pulled, and its record
    fetched: set[bytes] = set()
    todo = need
    pace: Meter | None = meter  # chunks fetched again are not progress
    for _ in range(_ATTEMPTS):
        try:
            for batch in batches(todo):
                check_cancel(cancel)
                frames = _download(remote, layout, codec, batch, raw_head, generation, pace)
                inbound.put(frames.items())
                fetched.update(frames)
        except _SupersededError:
            raise  # the newer head is pulled next, and may use what was written
        except IntegrityError:
            # Refused data leaves the store as it was; an interruption (a
            # deadline, Ctrl-C, an unreachable remote) keeps the batches.
            inbound.discard()
            raise
        check_cancel(cancel)
        outcome = inbound.commit()
        if isinstance(outcome, tuple):
            return outcome, fetched
        # A concurrent local save collected chunks this pull wrote or counted
        # on (unreferenced until the commit): fetch them again.
        todo = [r for r in refs if r.digest in outcome]
        pace = None
    msg = (
        f"Expected to commit {layout.namespace!r} from {remote.url}, but concurrent saves "
        f"collected its chunks {_ATTEMPTS} times; pull again"
    )
    raise StoreError(msg)


def _local_state(
    store: Store, namespace: str, manifest: Manifest
) -> tuple[int | None, float | None, set[bytes]]:
    """(identical local generation, local head's created_at, digests held locally)."""
    with store.read() as reader:
        return (
            reader.identical(namespace, manifest),
            reader.created_at(namespace),
            reader.present(namespace, manifest.digests()),
        )


def _download(
    remote: Remote,
    layout: Layout,
    codec: Codec,
    batch: list[ChunkRef],
    head_raw: bytes,
    generation: int,
    meter: Meter | None,
) -> dict[bytes, bytes]:
    """Fetch one batch of chunk frames and verify each (digest, MAC, size); nothing is written.

    No object larger than the largest chunk the batch expects is read whole.
    """
    frames: dict[bytes, bytes] = {}
    limit = min(max(r.stored_bytes for r in batch), MAX_OBJECT)
    got = remote.get([layout.chunk(r.digest) for r in batch], limit=max(limit, 0))
    for ref in batch:
        key = layout.chunk(ref.digest)
        frame = got.get(key)
        where = f"chunk {ref.digest.hex()} of remote generation {generation} on {remote.url}"
        if frame is None:
            if remote.get_head(layout.head) != head_raw:
                msg = f"{where} was retired by newer pushes while pulling"
                raise _SupersededError(msg)
            msg = f"Expected {where}, it is missing (was the remote evicted or pruned by hand?)"
            raise IntegrityError(msg)
        try:
            codec.verify(frame, digest=ref.digest)
        except IntegrityError as exc:
            msg = f"Expected a valid {where}: {exc}"
            raise IntegrityError(msg) from exc
        if len(frame) != ref.stored_bytes:
            msg = f"Expected {where} of {ref.stored_bytes} bytes, got {len(frame)}"
            raise IntegrityError(msg)
        frames[ref.digest] = frame
        if meter is not None:
            meter.advance(len(frame))
    return frames
