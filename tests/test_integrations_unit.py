"""The integrations' shared worker boot, in one process (the servers are in test_integrations).

Settings and their errors, the modes, readiness answers, the collector that
keeps objects built before the boot, the Flask extension through its test
client, the gunicorn hooks called as gunicorn calls them, and when Django's
app config decides a process serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

import warmstart
from warmstart.boot import VARIABLES, Collector
from warmstart.errors import ConfigurationError
from warmstart.integrations import _common
from warmstart.integrations._common import WorkerBoot, configure, current, health_payload

cachetools = pytest.importorskip("cachetools")


class Row(msgspec.Struct, frozen=True):
    n: int


ROWS = warmstart.Contract("row", Row)
HOT = warmstart.Contract("hot", Row, key=str)
#: Another worker of "svc" holding slot 0 until its stdin closes.
HOLD_SLOT_0 = """
import sys
from warmstart.workers import claim_slot
print(claim_slot(sys.argv[1], "svc").index, flush=True)
sys.stdin.read()
"""


@warmstart.warm(rows=warmstart.state(ROWS, lock="lock"))
class Cache:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rows = cachetools.LRUCache(maxsize=100)


def in_child(work: Any) -> Any:
    """``work()`` in a child of fork(); its JSON result, or the child's failure as an error."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child (coverage does not follow a fork)
        code = 0
        try:
            os.write(write, json.dumps(work()).encode())
        except BaseException as exc:  # reported to the parent
            os.write(write, json.dumps({"error": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    result = json.loads(b"".join(chunks))
    assert os.waitstatus_to_exitcode(status) == 0, result
    return result


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No WARMSTART_* variable but the directory; no current service left behind."""
    for name in (*VARIABLES.values(), "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WARMSTART_DIR", str(tmp_path / "warm"))
    monkeypatch.setattr(_common, "_CURRENT", None)
    yield
    service = current()
    if service is not None:
        service.stop()
        service.collector.stop()


class TestSettings:
    def test_directory_and_namespace_are_needed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        with pytest.raises(ConfigurationError, match="namespace"):
            WorkerBoot()
        monkeypatch.delenv("WARMSTART_DIR")
        with pytest.raises(ConfigurationError, match="WARMSTART_DIR"):
            WorkerBoot(namespace="svc")

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"mode": "sticky"}, "mode"),
            ({"pool": True}, "warmstart.workers.Pool"),
            ({"checkpoint_on_exit": True}, "chosen by the integration"),
            ({"intervall": 3}, "boot\\(\\) options"),
        ],
    )
    def test_bad_settings(self, options: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigurationError, match=match):
            WorkerBoot(namespace="svc", **options)

    def test_defaults(self, monkeypatch: pytest.MonkeyPatch) -> None:
        service = WorkerBoot(namespace="svc")
        assert (service.mode, service.workers, service.options["interval"]) == ("pool", None, 60.0)
        monkeypatch.setenv("WEB_CONCURRENCY", "3")
        monkeypatch.setenv("WARMSTART_INTERVAL", "5")
        service = WorkerBoot(namespace="svc", capture=Cache)
        assert (service.workers, service.options["interval"]) == (3, 5.0)
        assert "slot=None" in repr(service)


class TestWorkerBoot:
    def test_collect_start_loaded_stop(self) -> None:
        """Objects built before the start are attached; the slot is released at stop."""
        service = configure(namespace="svc", signals=False)
        service.collect()
        early = Cache()
        boot = service.start(workers=2)
        assert boot is not None
        assert service.start() is boot  # once per process
        assert service.slot is not None
        assert (service.slot.index, boot.namespace) == (0, "svc/worker-0")
        late = Cache.__new__(Cache)  # built while capturing: a second keyless one is left alone
        assert boot.report.sections["Cache.rows"].status == "cold"
        service.loaded()
        service.loaded()
        early.rows["a"] = Row(1)
        code, body = service.status()
        assert (code, body["status"], body["slot"]) == (200, "cold", 0)
        service.stop()
        assert service.slot is None
        assert not service.started
        service.stop()  # twice: nothing
        del late
        # The next start in this process restores it.
        again = configure(namespace="svc", signals=False)
        again.collect()
        obj = Cache()
        again.start()
        assert dict(obj.rows) == {"a": Row(1)}
        assert again.status()[1]["status"] == "warm"

    def test_a_memoized_function_defined_at_import(self) -> None:
        """@warmstart.cached at import (collected) comes back in the worker, and via the pool."""
        calls: list[str] = []

        def define() -> Any:
            @warmstart.cached(HOT)
            def lookup(key: str) -> Row:
                calls.append(key)
                return Row(len(key))

            return lookup

        service = configure(namespace="svc", signals=False)
        service.collect()
        lookup = define()  # "the app's import": collected
        service.start()
        service.loaded()
        assert [lookup(k) for k in ("a", "bb")] == [Row(1), Row(2)]
        service.stop()
        # Slot 0 is held by another worker now: this one takes slot 1 and gets
        # the function's cache from slot 0 through the pool.
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_SLOT_0, os.environ["WARMSTART_DIR"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == b"0\n"
            again = configure(namespace="svc", signals=False)
            again.collect()
            lookup = define()
            boot = again.start()
            assert boot is not None
            assert again.slot is not None
            assert again.slot.index == 1
            assert [lookup(k) for k in ("a", "bb")] == [Row(1), Row(2)]
            assert calls == ["a", "bb"]  # no call reached the function after the restart
        finally:
            holder.communicate(timeout=10)  # closes its stdin: it exits, freeing slot 0

    def test_shared_mode_has_no_slot(self) -> None:
        service = configure(namespace="svc", mode="shared", signals=False)
        boot = service.start()
        assert boot is not None
        assert (boot.namespace, service.slot) == ("svc", None)

    def test_a_master_defers(self) -> None:
        """A pre-forking master collects and never boots; configure keeps what it collected."""
        service = configure(namespace="svc", signals=False)
        service.defer()
        obj = Cache()
        assert service.start() is None
        assert service.deferred
        again = configure(namespace="svc", interval=5, signals=False)
        assert again.deferred
        assert again.collector.objects == (obj,)

    def test_a_child_forked_after_the_start_boots_its_own_slot(self) -> None:
        """The parent keeps its boot and slot: the child closes its copy and claims slot 1."""
        service = configure(namespace="svc", signals=False, interval=3600)
        parent = service.start()
        assert parent is not None
        assert service.slot is not None
        assert service.slot.index == 0
        obj = Cache()
        service.loaded()
        parent.attach(obj)
        obj.rows["parent"] = Row(0)

        def child() -> dict[str, Any]:
            assert (service.started, service.slot, service.boot) == (False, None, None)
            assert parent._closed  # the inherited copy: closed, never checkpointed here
            mine = service.start()
            assert mine is not None
            assert service.slot is not None
            seen = {"namespace": mine.namespace, "slot": service.slot.index}
            service.stop()
            return seen

        assert in_child(child) == {"namespace": "svc/worker-1", "slot": 1}
        assert service.boot is parent
        assert not parent._closed
        service.stop()
        again = configure(namespace="svc", signals=False)
        again.collect()
        restored = Cache()
        again.start()
        assert again.slot is not None
        assert again.slot.index == 0
        assert dict(restored.rows) == {"parent": Row(0)}  # the parent's slot, saved by it alone

    def test_configure_after_start_keeps_the_running_one(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        service = configure(namespace="svc", signals=False)
        service.start()
        with caplog.at_level(logging.WARNING):
            assert configure(namespace="other") is service
        assert "already started" in caplog.text

    def test_async_start_and_stop(self) -> None:
        async def run() -> tuple[Any, Any]:
            service = configure(namespace="svc", signals=False)
            service.collect()
            obj = Cache()
            boot = await service.astart()
            assert await service.astart() is boot
            obj.rows["x"] = Row(2)
            await service.astop()
            return boot, obj

        boot, _ = asyncio.run(run())
        assert boot.report.status == "cold"
        with warmstart.Store(os.environ["WARMSTART_DIR"]) as store:
            assert store.namespaces() == ["svc/worker-0"]

    def test_health_answers(self) -> None:
        assert health_payload(None) == (503, {"status": "starting", "readiness": 0.0})

        class Warming:
            readiness = 0.5
            namespace = "svc/worker-0"
            report = warmstart.BootReport(namespace="svc/worker-0", status="warm")

        code, body = health_payload(Warming())  # type: ignore[arg-type]
        assert (code, body["status"], body["readiness"]) == (503, "warming", 0.5)
        code, body = health_payload(Warming(), min_readiness=0.5)  # type: ignore[arg-type]
        assert (code, body["status"]) == (200, "warm")

    def test_not_in_a_gunicorn_master(self) -> None:
        assert not _common.in_prefork_master()


class TestCollector:
    def test_collects_in_its_context_until_handed_over(self, tmp_path: Path) -> None:
        collector = Collector(capture=Cache).start()
        obj = Cache()
        other = threading.Thread(target=Cache)  # built in another thread: not collected
        other.start()
        other.join()
        assert collector.objects == (obj,)
        with warmstart.boot(tmp_path / "s", namespace="svc", signals=False) as b:
            assert collector.hand_over(b) == 1
        assert not collector.collecting
        Cache()
        assert collector.objects == ()

    def test_a_refused_object_is_logged(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        with Collector() as collector:
            Cache()
            Cache()
        with (
            caplog.at_level(logging.WARNING),
            warmstart.boot(tmp_path / "s", namespace="svc", signals=False) as b,
        ):
            assert collector.hand_over(b) == 1
        assert "not attached" in caplog.text


class TestGunicornHooks:
    def server(self, *, preload: bool = False) -> Any:
        return SimpleNamespace(num_workers=2, cfg=SimpleNamespace(timeout=30, preload_app=preload))

    def test_hooks_in_order(self) -> None:
        """The master collects (preload_app); a forked worker boots its slot with what it built."""
        from warmstart.integrations import gunicorn as warm

        warm.configure(namespace="svc")
        assert warm.status()[0] == 503  # the master: no boot
        obj = Cache()  # preload: built in the master, collected

        def worker() -> dict[str, Any]:
            service = current()
            assert service is not None
            assert not service.deferred  # the fork hook: a master's child serves
            warm.post_fork(self.server(preload=True), None)
            warm.post_worker_init(None)
            assert service.boot is not None
            obj.rows["a"] = Row(1)
            seen = {
                "status": service.boot.report.sections["Cache.rows"].status,
                "signals": service.boot.settings.signals,
                "slot": warm.status()[1]["slot"],
            }
            warm.worker_exit(None, None)
            return seen

        assert in_child(worker) == {"status": "cold", "signals": False, "slot": 0}
        service = current()
        assert service is not None
        assert (service.deferred, service.started) == (True, False)
        with warmstart.Store(os.environ["WARMSTART_DIR"]) as store:
            assert store.namespaces() == ["svc/worker-0"]

    def test_preload_without_configure_warns(self, caplog: pytest.LogCaptureFixture) -> None:
        from warmstart.integrations import gunicorn as warm

        os.environ["WARMSTART_NAMESPACE"] = "svc"
        assert warm.status()[0] == 503
        with caplog.at_level(logging.WARNING):
            warm.post_fork(self.server(preload=True), None)
        assert "configure()" in caplog.text


class TestFlask:
    def test_factory_with_the_test_client(self) -> None:
        flask = pytest.importorskip("flask")
        from warmstart.integrations.flask import Warmstart

        warm = Warmstart()

        def create_app() -> Any:
            app = flask.Flask("t")
            app.config["WARMSTART_NAMESPACE"] = "svc"
            app.config["WARMSTART_BOOT"] = {"signals": False}
            warm.init_app(app)
            app.extensions["cache"] = Cache()
            app.add_url_rule("/health", view_func=warm.health)
            return app

        app = create_app()
        assert app.extensions["warmstart"] is warm
        assert warm.boot is not None
        assert warm.service is current()
        response = app.test_client().get("/health")
        assert response.status_code == 200
        assert response.json["namespace"] == "svc/worker-0"
        assert response.headers["Cache-Control"] == "no-store"
        assert warm.boot.report.sections["Cache.rows"].status == "cold"

    def test_the_reloader_watcher_waits_for_a_request(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        flask = pytest.importorskip("flask")
        from warmstart.integrations.flask import Warmstart

        monkeypatch.setenv("FLASK_RUN_FROM_CLI", "true")
        app = flask.Flask("t")
        warm = Warmstart(app, namespace="svc", signals=False)
        assert warm.boot is None
        obj = Cache()
        app.add_url_rule("/health", view_func=warm.health)
        assert app.test_client().get("/health").status_code == 200  # started by the request
        assert warm.boot is not None
        assert "Cache.rows" in warm.boot.report.sections
        del obj

    def test_health_before_any_configuration(self) -> None:
        pytest.importorskip("flask")
        from warmstart.integrations.flask import Warmstart

        assert Warmstart().health()[1] == 503


class TestDjango:
    @pytest.mark.parametrize(
        ("argv", "environ", "serving"),
        [
            (["gunicorn", "shop.wsgi"], {}, True),
            (["manage.py", "migrate"], {}, False),
            (["/x/django-admin", "shell"], {}, False),
            (["manage.py", "runserver"], {}, False),  # the autoreloader's watcher
            (["manage.py", "runserver"], {"RUN_MAIN": "true"}, True),
            (["manage.py", "runserver", "--noreload"], {}, True),
            (["/x/django/__main__.py", "check"], {}, False),
        ],
    )
    def test_which_processes_serve(
        self,
        monkeypatch: pytest.MonkeyPatch,
        argv: list[str],
        environ: dict[str, str],
        serving: bool,
    ) -> None:
        pytest.importorskip("django")
        from warmstart.integrations.django import apps

        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.delenv("RUN_MAIN", raising=False)
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        assert apps.serving() is serving

    def test_health_view_before_a_boot(self) -> None:
        django = pytest.importorskip("django")
        from django.conf import settings

        if not settings.configured:
            settings.configure(WARMSTART={"MIN_READINESS": 0.5})
        django.setup()
        from warmstart.integrations.django import current_boot, health

        response = health(None)
        assert response.status_code == 503
        assert current_boot() is None


class TestNotServing:
    def test_a_flask_command_never_boots(self, monkeypatch: pytest.MonkeyPatch) -> None:
        flask = pytest.importorskip("flask")
        from warmstart.integrations.flask import Warmstart

        monkeypatch.setattr(sys, "argv", ["/venv/bin/flask", "shell"])
        warm = Warmstart(flask.Flask("t"), namespace="svc", signals=False)
        assert warm.boot is None

    def test_a_django_management_command_needs_no_settings(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        pytest.importorskip("django")
        from warmstart.integrations.django import apps

        monkeypatch.delenv("WARMSTART_DIR")
        monkeypatch.setattr(sys, "argv", ["manage.py", "migrate"])
        config = apps.WarmstartConfig("warmstart.integrations.django", apps)
        config.ready()
        assert current() is None


class TestAsgiLifespan:
    def test_a_lifespan_with_an_inner_one(self) -> None:
        """Collected at import, captured in the inner lifespan, checkpointed at shutdown."""
        pytest.importorskip("starlette")
        from warmstart.integrations.asgi import WarmLifespan

        built: dict[str, Any] = {}

        @contextlib.asynccontextmanager
        async def inner(app: Any) -> Any:
            built["inner"] = Cache()
            yield {"answer": 42}

        warm = WarmLifespan(inner, namespace="svc", min_readiness=0.5)
        assert warm.boot is None
        early = Cache()  # "at import": collected

        async def serve() -> Any:
            async with warm(object()) as state:
                assert state == {"answer": 42}
                response = await warm.health(None)
                assert response.status_code == 200
                assert json.loads(response.body)["slot"] == 0
                assert warm.boot is not None
                early.rows["a"] = Row(1)
                built["inner"].rows["b"] = Row(2)  # a second keyless instance: left alone
                return warm.boot

        boot = asyncio.run(serve())
        assert boot.report.sections["Cache.rows"].status == "cold"
        with (
            warmstart.Store(os.environ["WARMSTART_DIR"]) as store,
            store.load("svc/worker-0") as snapshot,
        ):
            assert snapshot.section("Cache.rows", ROWS) == {"a": Row(1)}

    def test_health_is_503_while_warming_then_200(self) -> None:
        """The endpoint follows boot.readiness: 503 while hot keys are prefetched, then 200."""
        pytest.importorskip("starlette")
        from warmstart.integrations.asgi import WarmLifespan

        gates: list[asyncio.Event] = []

        async def prefetch(keys: list[str]) -> dict[str, Row]:
            if gates:
                await gates[0].wait()
            return {k: Row(len(k)) for k in keys}

        @warmstart.warm(hot=warmstart.state(HOT, keys_only=True, prefetch=prefetch))
        class Hot:
            def __init__(self) -> None:
                self.hot: dict[str, Row] = {}

        async def serve() -> list[tuple[int, str]]:
            warm = WarmLifespan(namespace="svc")
            obj = Hot()  # "at import": collected
            seen = []
            async with warm(object()):
                if not gates:  # the first run: fill, checkpoint at shutdown
                    obj.hot.update({"a": Row(1), "bb": Row(2)})
                    return seen
                for _ in range(2):
                    response = await warm.health(None)
                    seen.append((response.status_code, json.loads(response.body)["status"]))
                    gates[0].set()  # the source of truth answers the prefetch
                    for _ in range(500):
                        if warm.boot is not None and warm.boot.readiness >= 1:
                            break
                        await asyncio.sleep(0.01)
            assert obj.hot == {"a": Row(1), "bb": Row(2)}
            return seen

        assert asyncio.run(serve()) == []

        async def second() -> list[tuple[int, str]]:
            gates.append(asyncio.Event())
            return await serve()

        assert asyncio.run(second()) == [(503, "warming"), (200, "warm")]

    def test_the_current_configuration_without_settings(self) -> None:
        pytest.importorskip("starlette")
        from warmstart.integrations.asgi import WarmLifespan

        os.environ["WARMSTART_NAMESPACE"] = "from-env"
        warm = WarmLifespan()
        assert warm.service.service == "from-env"
        assert WarmLifespan().service is warm.service
