"""A boot's duties in a rolling deploy, in one thread: reader records and hand-off answers.

Private to the boot wing. Each boot on a writable store runs one agent
thread (``boot(heartbeat=...)``, on by default; and ``handoff=...``):

- **Reader records**: every ``heartbeat`` seconds (default 10) the agent
  writes what this boot's contracts can read (``warmstart.exposure.Instance``)
  to ``<store>/readers/<namespace digest>.<pid>-<token>`` and, with a
  remote, to ``<namespace>/@ws/readers/`` there. A record counts as live
  until three heartbeats have passed without a refresh (a killed instance
  stops counting after that; one on this host whose process is gone, at
  once); a boot that closes removes its record. An attach refreshes it at
  once (new contracts). A boot with a ``write_version="auto"`` contract
  reads the records at each checkpoint (the remote's are fetched by the
  heartbeat) and writes the newest version every live reader can read
  (:func:`warmstart.exposure.choose`).
- **Hand-off**: requests from the local listener (``_handoff``) and the
  remote one are queued; the agent takes one checkpoint for all the
  requests queued before it started (a request that arrives during it gets
  the next one) and answers each with its generation. Checkpoints run one
  at a time under the boot's lock, so a hand-off never overlaps a periodic
  or shutdown checkpoint; the service's own threads never wait for it.

Idle cost: the thread sleeps until the next heartbeat, a request or an
attach: one wake-up and one small file write (plus one remote put, and with
an auto contract one remote listing) per heartbeat.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from warmstart.boot._handoff import LocalListener, namespace_prefix
from warmstart.boot._settings import BootSettings
from warmstart.codec import SEAL_READER, Codec
from warmstart.contract import Contract
from warmstart.errors import IntegrityError
from warmstart.exposure import Instance, Readable, choose, readable
from warmstart.metrics import CheckpointReport, Metrics
from warmstart.store import SectionSpec, Store

if TYPE_CHECKING:
    from warmstart.remote import Remote, RemoteListener

__all__ = ("Agent", "live_records")

log = logging.getLogger("warmstart.boot")

#: A record counts as live for this many heartbeats after its last refresh.
EXPIRY_BEATS = 3
_encoder = msgspec.msgpack.Encoder()


@functools.cache
def _decoder() -> msgspec.msgpack.Decoder[Instance]:
    """Built on first use (a typed decoder inspects its Structs)."""
    return msgspec.msgpack.Decoder(Instance)


Reply = Callable[[dict[str, Any]], None]


def readers_dir(store_path: Path) -> Path:
    return store_path / "readers"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def live_records(
    store_path: Path, namespace: str, now: float, *, prune: bool, codec: Codec
) -> list[Instance]:
    """The live reader records of ``namespace`` in a store directory.

    A record past its expiry, or of a process on this host that is gone, is
    not live (and, with ``prune``, is removed). In a keyed store a record
    without this store's MAC is skipped with a warning: a forged reader must
    not hold back, or let through, a contract version.
    """
    folder = readers_dir(store_path)
    prefix = namespace_prefix(namespace)
    host = os.uname().nodename
    found: list[Instance] = []
    try:
        names = [p.name for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return found
    for name in names:
        path = folder / name
        try:
            raw = path.read_bytes()
        except OSError as exc:
            log.debug("reader record %s unreadable: %s", path, exc)
            continue
        record = decode_record(codec, namespace, raw, str(path))
        if record is None or record.namespace != namespace:
            continue
        if record.expires_at <= now or (record.host == host and not _alive(record.pid)):
            if prune:
                with contextlib.suppress(OSError):
                    path.unlink()
            continue
        found.append(record)
    return found


#: Forged reader records already warned of (a heartbeat reads them every few seconds).
_WARNED: set[str] = set()


def encode_record(codec: Codec, record: Instance) -> bytes:
    """A reader record as stored, sealed with the store's MAC when it is keyed."""
    return codec.seal(SEAL_READER, record.namespace.encode(), _encoder.encode(record))


def decode_record(codec: Codec, namespace: str, raw: bytes, where: str) -> Instance | None:
    """The record stored at ``where``, or None if it is malformed or (keyed) forged."""
    try:
        record: Instance = _decoder().decode(codec.unseal(SEAL_READER, namespace.encode(), raw))
    except IntegrityError as exc:
        if where not in _WARNED:
            _WARNED.add(where)
            log.warning("reader record %s of %r skipped: %s", where, namespace, exc)
        return None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.debug("reader record %s unreadable: %s", where, exc)
        return None
    return record


class Agent:
    """One boot's agent thread: reader records and hand-off answers."""

    def __init__(
        self,
        store: Store,
        settings: BootSettings,
        *,
        checkpoint: Callable[[str], CheckpointReport],
        contracts: Callable[[], list[Contract[Any]]],
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.settings = settings
        self._checkpoint = checkpoint
        self._contracts = contracts
        self._metrics = metrics
        self.host = os.uname().nodename
        self.name = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.id = f"{self.host}/{self.name}"
        self.started_at = settings.clock()
        self._cond = threading.Condition()
        self._record_lock = threading.Lock()  # the record is written from two threads
        self._requests: list[Reply] = []
        self._poked = True  # write the first record at once
        self._stopped = False  # stop() or fork(): no more requests, no more records
        self.thread: threading.Thread | None = None
        self._local: LocalListener | None = None
        self._remote_listener: RemoteListener | None = None
        self._remote: Remote | None = None
        self._owns_remote = False
        self._remote_records: list[Instance] = []
        self._remote_failing = False
        self._remote_fetched = False  # the remote's reader records were read once
        self._published = False
        self._exposed: dict[str, int] = {}
        self._warned_no_records = False
        prefix = namespace_prefix(settings.namespace)
        self._record = readers_dir(store.path) / f"{prefix}{self.name}"

    # -- life -----------------------------------------------------------------

    def start(self) -> None:
        """Start the thread; with hand-off, listen on the store's socket folder (and remote)."""
        self._open_remote()
        self.thread = threading.Thread(target=self._run, name="warmstart-agent", daemon=True)
        self.thread.start()
        if self.settings.handoff is None:
            return
        if self._remote is not None:
            self._start_remote_listener(self._remote)
        try:
            self._local = LocalListener(
                self.store.path, self.settings.namespace, self.name, self._local_request
            )
            self._local.start()
        except OSError as exc:
            self._local = None
            log.warning(
                "namespace %r: hand-off listener not started (%s); successors on this host "
                "will not be able to ask this instance",
                self.settings.namespace,
                exc,
            )

    def _start_remote_listener(self, remote: Remote) -> None:
        from warmstart.remote import RemoteListener, supports_handoff  # noqa: PLC0415 - optional

        if self.settings.handoff is None or not supports_handoff(remote):
            return
        listener = RemoteListener(remote, self.settings.namespace, self.id, self._remote_request)
        listener.start()
        self._remote_listener = listener

    def poke(self) -> None:
        """The attached contracts changed: write the record here now, the remote's soon.

        The local record is written in the caller's thread (an attach, once
        per new ``@warm`` class): from then on, a writer on this host sees
        this reader. The remote one follows from the agent's thread.
        """
        if self.settings.heartbeat is None or self._stopped:
            return
        try:
            self._write_local()
        except OSError as exc:
            log.warning("reader record of %r not written: %s", self.settings.namespace, exc)
        with self._cond:
            self._poked = True
            self._cond.notify()

    def stop(self, timeout: float) -> None:
        """Stop listening, answer what is queued, remove this boot's records (idempotent)."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._cond.notify()
        if self._local is not None:
            self._local.stop()
        if self._remote_listener is not None:
            self._remote_listener.stop(min(timeout, 1.0))
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            leftover, self._requests = self._requests, []
        if leftover:
            self._answer(leftover, "closed", self._head())
        self._withdraw()

    def forked(self) -> None:
        """In a child of fork(): the parent's thread and sockets are not ours."""
        self._stopped = True
        self.thread = None
        if self._local is not None:
            self._local.forked()
        self._remote_listener = None
        self._remote = None

    # -- requests -------------------------------------------------------------

    def _local_request(self, reply: Reply) -> None:
        self._submit(reply)

    def _remote_request(self, request: dict[str, Any], reply: Reply) -> None:
        del request  # every request asks the same thing: a fresh checkpoint
        self._submit(reply)

    def _submit(self, reply: Reply) -> None:
        self._metrics.inc("handoff_requests_total")
        with self._cond:
            if self._stopped:
                late = True
            else:
                late = False
                self._requests.append(reply)
                self._cond.notify()
        if late:
            self._answer([reply], "closed", self._head())

    def _answer(self, replies: list[Reply], status: str, generation: int | None) -> None:
        answer = {"status": status, "generation": generation, "instance": self.id}
        for reply in replies:
            reply(answer)

    def _head(self) -> int | None:
        try:
            with self.store.read() as reader:
                head = reader.head(self.settings.namespace)
        except Exception as exc:
            log.debug("hand-off: head not read: %s", exc)
            return None
        return None if head is None else head[0]

    def _serve(self, replies: list[Reply]) -> None:
        """One checkpoint for every request queued before it started."""
        started = time.perf_counter()
        self._metrics.inc("handoff_checkpoints_total")
        report = self._checkpoint("handoff")
        status = report.status if not (self._stopped and report.status == "failed") else "closed"
        generation = report.generation if report.generation is not None else self._head()
        self._answer(replies, status, generation)
        log.info(
            "hand-off of %r: %d request(s) answered with generation %s (%s) in %.3fs",
            self.settings.namespace,
            len(replies),
            generation,
            status,
            time.perf_counter() - started,
            extra={"namespace": self.settings.namespace, "generation": generation},
        )

    # -- the thread -----------------------------------------------------------

    def _run(self) -> None:
        heartbeat = self.settings.heartbeat
        next_beat = time.monotonic()
        while True:
            with self._cond:
                while not (self._requests or self._stopped or self._poked):
                    wait = math.inf if heartbeat is None else next_beat - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(None if wait == math.inf else wait)
                batch, self._requests = self._requests, []
                poked, self._poked = self._poked, False
                stopping = self._stopped
            if batch:
                try:
                    self._serve(batch)
                except Exception:
                    log.exception("hand-off of %r failed", self.settings.namespace)
                    self._answer(batch, "failed", None)
            if stopping:
                return
            if heartbeat is not None and (poked or time.monotonic() >= next_beat):
                try:
                    self._beat()
                except Exception:
                    log.exception("reader record of %r not written", self.settings.namespace)
                next_beat = time.monotonic() + heartbeat

    # -- reader records -------------------------------------------------------

    def _instance(self) -> Instance:
        assert self.settings.heartbeat is not None
        now = self.settings.clock()
        return Instance(
            id=self.id,
            host=self.host,
            pid=os.getpid(),
            namespace=self.settings.namespace,
            started_at=self.started_at,
            expires_at=now + EXPIRY_BEATS * self.settings.heartbeat,
            reads=self._reads(),
        )

    def _beat(self) -> None:
        """Write this boot's record (here and on the remote); fetch the others' remote ones."""
        record = self._write_local()
        remote = self._remote
        if remote is None:
            return
        from warmstart.remote import get_readers, put_reader  # noqa: PLC0415 - optional tier

        try:
            if record is not None:
                put_reader(remote, self.settings.namespace, self.host, self.name, record)
            if self._auto():
                self._remote_records = self._decode_remote(remote, get_readers)
                self._remote_fetched = True
        except Exception as exc:
            if not self._remote_failing:
                log.warning(
                    "reader record of %r not published to %s: %s",
                    self.settings.namespace,
                    remote.url,
                    exc,
                )
            self._remote_failing = True
        else:
            self._remote_failing = False

    def _write_local(self) -> bytes | None:
        """Write this boot's record in the store directory (once it reads anything)."""
        with self._record_lock:
            if self._stopped or not (self._published or self._contracts()):
                return None
            record = encode_record(self.store.codec, self._instance())
            folder = self._record.parent
            folder.mkdir(mode=0o700, exist_ok=True)
            partial = folder / f".{self._record.name}.tmp"
            partial.write_bytes(record)
            partial.replace(self._record)  # atomic: a reader sees a whole record
            self._published = True
            return record

    def _decode_remote(
        self, remote: Remote, get_readers: Callable[..., Iterable[tuple[str, bytes]]]
    ) -> list[Instance]:
        from warmstart.remote import delete_readers  # noqa: PLC0415 - optional tier

        now = self.settings.clock()
        found, expired = [], []
        for key, raw in get_readers(remote, self.settings.namespace):
            record = decode_record(self.store.codec, self.settings.namespace, raw, key)
            if record is None or record.namespace != self.settings.namespace:
                continue
            if record.expires_at <= now:
                expired.append(key)
            else:
                found.append(record)
        delete_readers(remote, expired)
        return found

    def _open_remote(self) -> None:
        """Open the remote (a URL is opened lazily by its backend: no I/O here)."""
        target = self.settings.remote
        if target is None:
            return
        if not isinstance(target, str):
            self._remote = target
            return
        from warmstart.remote import open_remote  # noqa: PLC0415 - optional tier

        try:
            self._remote = open_remote(target, timeout=self.settings.remote_deadline)
        except Exception as exc:
            log.warning("namespace %r: remote not opened: %s", self.settings.namespace, exc)
            return
        self._owns_remote = True

    def _withdraw(self) -> None:
        """Remove this boot's records: it no longer reads anything."""
        with self._record_lock, contextlib.suppress(OSError):
            self._record.unlink()
        remote, self._remote = self._remote, None
        if remote is None:
            return
        if self._published:
            from warmstart.remote import delete_readers, reader_key  # noqa: PLC0415

            try:
                key = reader_key(self.settings.namespace, self.host, self.name)
                delete_readers(remote, [key])
            except Exception as exc:
                log.info("reader record of %r left to expire: %s", self.settings.namespace, exc)
        if self._owns_remote:
            remote.close()

    # -- exposure -------------------------------------------------------------

    def _reads(self) -> tuple[Readable, ...]:
        """What this boot's contracts read, each once."""
        return tuple(dict.fromkeys(map(readable, self._contracts())))

    def _auto(self) -> bool:
        return any(c.auto for c in self._contracts())

    def expose(self, sections: dict[str, SectionSpec]) -> dict[str, SectionSpec]:
        """``sections`` with each auto contract set to write what every live reader reads.

        Never raises: whatever goes wrong, an auto contract writes its staged
        (previous) version, which the old release reads.
        """
        autos = {name: spec for name, spec in sections.items() if spec[0].auto}
        if not autos:
            return sections
        try:
            instances = self._live_instances()
        except Exception:
            log.exception("namespace %r: reader records unreadable", self.settings.namespace)
            instances = None
        if instances is None:
            return sections  # the staged versions
        now = self.settings.clock()
        out = dict(sections)
        for name, spec in autos.items():
            contract: Contract[Any] = spec[0]
            choice = choose(contract, instances, now)
            out[name] = (choice.contract, *spec[1:])
            self._log_choice(contract, choice.contract.write_version, choice.held_back_by)
        return out

    def _live_instances(self) -> list[Instance] | None:
        """Every live reader record (here and on the remote); None: they are not known."""
        if self.settings.heartbeat is None:
            if not self._warned_no_records:
                self._warned_no_records = True
                log.warning(
                    "namespace %r: write_version='auto' needs reader records "
                    "(boot(heartbeat=None) turns them off); writing the staged versions",
                    self.settings.namespace,
                )
            return None
        if self._remote is not None and not self._remote_fetched:
            # Readers on other hosts are not known yet (the first heartbeat
            # has not fetched them, or the remote is down): stay staged.
            return None
        now = self.settings.clock()
        instances = {r.id: r for r in self._remote_records if r.expires_at > now}
        for record in live_records(
            self.store.path, self.settings.namespace, now, prune=True, codec=self.store.codec
        ):
            instances[record.id] = record
        return list(instances.values())

    def _log_choice(self, contract: Contract[Any], version: int, held: tuple[str, ...]) -> None:
        if self._exposed.get(contract.name) == version:
            return  # logged when it changes
        self._exposed[contract.name] = version
        if held:
            log.info(
                "namespace %r: contract %r writes v%d while live readers need it (%s)",
                self.settings.namespace,
                contract.name,
                version,
                "; ".join(held[:3]),
            )
        else:
            log.info(
                "namespace %r: contract %r writes v%d: every live reader reads it",
                self.settings.namespace,
                contract.name,
                version,
            )
