"""boot(remote=...): a replica on another host comes back warm from its predecessor."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import msgspec

import warmstart


class Quote(msgspec.Struct):
    price: float


QUOTES = warmstart.Contract("quote", Quote)


@warmstart.warm(quotes=QUOTES)
class Prices:
    def __init__(self) -> None:
        self.quotes: dict[str, Quote] = {}


class TestBootRemote:
    def test_second_host_pulls_the_first_hosts_state(self, tmp_path: Path) -> None:
        """Host A's shutdown checkpoint is pushed; host B, with an empty store, boots warm."""
        remote = (tmp_path / "shared").as_uri()
        with warmstart.boot(tmp_path / "host-a", namespace="p", signals=False, remote=remote) as a:
            Prices().quotes.update({f"S{i}": Quote(float(i)) for i in range(500)})
        assert a.remote_outcomes["push"].status == "done"
        with warmstart.boot(tmp_path / "host-b", namespace="p", signals=False, remote=remote) as b:
            prices = Prices()
        assert b.remote_outcomes["pull"].status == "done"
        assert b.report.status == "warm"
        assert prices.quotes == {f"S{i}": Quote(float(i)) for i in range(500)}

    def test_unreachable_remote_never_blocks_the_boot(self, tmp_path: Path) -> None:
        """A remote nobody listens on costs at most the deadline and is reported, not raised."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]  # closed again: nothing listens there
        started = time.perf_counter()
        with warmstart.boot(
            tmp_path / "host",
            namespace="p",
            signals=False,
            remote=f"redis://127.0.0.1:{port}/0",
            remote_deadline=1.0,
        ) as boot:
            Prices().quotes["A"] = Quote(1.0)
        assert time.perf_counter() - started < 5.0
        assert boot.remote_outcomes["pull"].status in {"unavailable", "timeout", "failed"}
        assert boot.remote_outcomes["push"].status in {"unavailable", "timeout", "failed"}
        assert boot.report.status == "cold"
        with warmstart.Store(tmp_path / "host") as store:
            assert store.generations("p")  # the local checkpoint happened anyway
