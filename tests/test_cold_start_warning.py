"""A cold start is reported once, and never becomes a crash under warnings-as-errors.

Issue 12: under ``python -W error`` (or pytest's ``filterwarnings = error``,
which many services use) a boot on a damaged store raised ``ColdStartWarning``
out of ``boot()`` and start-up failed; and each cold start was reported twice
(a warning and a log record).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import lmdb
import msgspec
import pytest

import warmstart
from conftest import RECORDS, make_records


def damage_every_chunk(store: Path) -> None:
    """Flip one byte in the middle of every chunk, through LMDB itself."""
    env = lmdb.open(str(store), max_dbs=8, subdir=True)
    try:
        chunks = env.open_db(b"chunks", create=False)
        with env.begin(write=True) as txn:
            doomed = [(bytes(k), bytearray(v)) for k, v in txn.cursor(db=chunks)]
            for key, value in doomed:
                value[len(value) // 2] ^= 0xFF
                txn.put(key, bytes(value), db=chunks)
    finally:
        env.close()


@pytest.fixture
def damaged(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    with warmstart.Store(path) as store:
        store.save("svc", {"Holder.rows": (RECORDS, make_records(50))})
    damage_every_chunk(path)
    return path


SERVICE = textwrap.dedent(
    """
    import json, logging, sys
    import warmstart
    sys.path.insert(0, {tests!r})
    from conftest import RECORDS

    logging.basicConfig(level=logging.WARNING, format="LOG %(levelname)s %(message)s")

    @warmstart.warm(rows=RECORDS)
    class Holder:
        def __init__(self):
            self.rows = {{}}

    with warmstart.boot({store!r}, namespace="svc", checkpoint_on_exit=False) as boot:
        holder = Holder()
    print(json.dumps({{"status": boot.report.status, "rows": len(holder.rows)}}))
    """
)


class TestWarningsAsErrors:
    def test_a_cold_boot_under_python_w_error_starts(self, damaged: Path) -> None:
        """`python -W error`: the boot on a damaged store starts cold and the process goes on."""
        code = SERVICE.format(tests=str(Path(__file__).parent), store=str(damaged))
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert msgspec.json.decode(done.stdout.strip().splitlines()[-1]) == {
            "status": "cold",
            "rows": 0,
        }
        # Reported once: one WARNING record, no traceback, no second line.
        cold_lines = [line for line in done.stderr.splitlines() if "cold start" in line]
        assert len(cold_lines) == 1, done.stderr
        assert cold_lines[0].startswith("LOG WARNING")
        assert "Traceback" not in done.stderr

    def test_boot_and_attach_never_raise_the_warning(
        self, damaged: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """In-process, with the filter set to error: boot() and a @warm constructor return."""

        @warmstart.warm(rows=RECORDS)
        class Holder:
            def __init__(self) -> None:
                self.rows: dict[str, object] = {}

        caplog.set_level(logging.WARNING, logger="warmstart")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with warmstart.boot(damaged, namespace="svc", checkpoint_on_exit=False) as boot:
                holder = Holder()
        assert boot.report.status == "cold"
        assert holder.rows == {}
        cold = [r for r in caplog.records if "cold start" in r.getMessage()]
        assert len(cold) == 1
        assert cold[0].levelno == logging.WARNING

    def test_a_section_cold_start_in_attach_is_logged_not_raised(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A section its contract cannot read starts cold inside attach(), even with -W error."""

        class Other(msgspec.Struct):
            name: str

        path = tmp_path / "store"
        with warmstart.Store(path) as store:
            store.save("svc", {"Holder.rows": (RECORDS, make_records(5))})

        @warmstart.warm(rows=warmstart.Contract("other", Other, key=str))
        class Holder:
            def __init__(self) -> None:
                self.rows: dict[str, Other] = {}

        caplog.set_level(logging.WARNING, logger="warmstart")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with warmstart.boot(path, namespace="svc", checkpoint_on_exit=False) as boot:
                holder = Holder()
        assert holder.rows == {}
        assert boot.report.sections["Holder.rows"].status == "cold"
        assert len([r for r in caplog.records if "cold start" in r.getMessage()]) == 1


class TestReportedOnce:
    def test_a_shown_warning_is_not_also_logged(
        self, damaged: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """With warnings shown as usual, the cold start is one warning and no WARNING record."""
        caplog.set_level(logging.INFO, logger="warmstart")
        with (
            pytest.warns(warmstart.ColdStartWarning, match="cold start") as caught,
            warmstart.boot(damaged, namespace="svc", checkpoint_on_exit=False) as boot,
        ):
            pass
        assert boot.report.status == "cold"
        assert len([w for w in caught if w.category is warmstart.ColdStartWarning]) == 1
        # The boot's summary line is the report, logged at INFO; nothing else repeats it.
        repeated = [
            r
            for r in caplog.records
            if "cold start" in r.getMessage() or "starts cold" in r.getMessage()
        ]
        assert not repeated
