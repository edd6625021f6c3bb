"""The WARMSTART_* variables: one set, read by boot() and the CLI alike (issue 19).

The Kubernetes manifests of the guides set WARMSTART_DIR, WARMSTART_SECRET
(or a mounted WARMSTART_SECRET_FILE) and WARMSTART_REMOTE; before, boot()
read none of them, so the service wrote an unkeyed store that `warmstart
verify` in the same pod, which read the secret, reported as damaged.
"""

from __future__ import annotations

import datetime
import io
from contextlib import redirect_stdout
from pathlib import Path

import msgspec
import pytest

import warmstart
from warmstart.boot import VARIABLES, environment, parse_duration
from warmstart.cli import main
from warmstart.errors import ConfigurationError


class Row(msgspec.Struct):
    n: int


ROWS = warmstart.Contract("row", Row)


@warmstart.warm(rows=ROWS)
class Rows:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES.values():
        monkeypatch.delenv(name, raising=False)


class TestEnvironment:
    def test_everything_unset(self) -> None:
        env = environment({})
        assert env == environment(dict.fromkeys(VARIABLES.values(), ""))
        assert env.directory is env.namespace is env.secret is env.remote is None

    def test_every_variable(self, tmp_path: Path) -> None:
        key = tmp_path / "key"
        key.write_bytes(b"s3cret\n")
        env = environment(
            {
                "WARMSTART_DIR": "/var/lib/svc/warm",
                "WARMSTART_NAMESPACE": "svc",
                "WARMSTART_SECRET_FILE": str(key),
                "WARMSTART_REMOTE": "redis://:pw@redis/0",
                "WARMSTART_INTERVAL": "30",
                "WARMSTART_MAX_AGE": "2h",
            }
        )
        assert (env.directory, env.namespace, env.secret) == ("/var/lib/svc/warm", "svc", b"s3cret")
        assert (env.remote, env.interval, env.max_age) == ("redis://:pw@redis/0", 30.0, 7200.0)
        shown = repr(env)
        assert "s3cret" not in shown
        assert "pw" not in shown
        assert "<redacted>" in shown

    @pytest.mark.parametrize(
        ("variables", "match"),
        [
            ({"WARMSTART_INTERVAL": "soon"}, "WARMSTART_INTERVAL"),
            ({"WARMSTART_MAX_AGE": "-3s"}, "WARMSTART_MAX_AGE"),
            ({"WARMSTART_SECRET": "a", "WARMSTART_SECRET_FILE": "/x"}, "both are set"),
            ({"WARMSTART_SECRET_FILE": "/nonexistent/key"}, "readable file"),
        ],
    )
    def test_malformed_variables_are_named(self, variables: dict[str, str], match: str) -> None:
        with pytest.raises(ConfigurationError, match=match):
            environment(variables)

    def test_an_empty_secret_file_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "key").write_text("\n")
        with pytest.raises(ConfigurationError, match="empty"):
            environment({"WARMSTART_SECRET_FILE": str(tmp_path / "key")})

    def test_durations(self) -> None:
        assert parse_duration("30") == 30.0
        assert parse_duration("1.5m") == 90.0
        assert parse_duration(datetime.timedelta(seconds=2)) == 2.0


class TestBootReadsTheEnvironment:
    def test_directory_namespace_interval_max_age(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("WARMSTART_DIR", str(tmp_path / "warm"))
        monkeypatch.setenv("WARMSTART_NAMESPACE", "svc")
        monkeypatch.setenv("WARMSTART_INTERVAL", "90s")
        monkeypatch.setenv("WARMSTART_MAX_AGE", "1h")
        b = warmstart.boot(signals=False)
        assert b.namespace == "svc"
        assert (b.settings.interval, b.settings.max_age) == (90.0, 3600.0)
        with b:
            Rows().rows["a"] = Row(1)
        assert (tmp_path / "warm" / "data.mdb").is_file()

    def test_an_argument_wins(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("WARMSTART_INTERVAL", "90s")
        monkeypatch.setenv("WARMSTART_NAMESPACE", "env")
        monkeypatch.setenv("WARMSTART_REMOTE", "file:///nowhere")
        b = warmstart.boot(tmp_path, namespace="arg", interval=5, remote="file:///there")
        assert (b.namespace, b.settings.interval, b.settings.remote) == (
            "arg",
            5.0,
            "file:///there",
        )
        keyed = warmstart.boot(tmp_path, namespace="arg", store_options={"secret": b"mine"})
        monkeypatch.setenv("WARMSTART_SECRET", "env")
        assert keyed.settings.store_options["secret"] == b"mine"
        assert warmstart.boot(tmp_path, namespace="x").settings.store_options["secret"] == b"env"

    def test_missing_directory_or_namespace(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with pytest.raises(ConfigurationError, match="WARMSTART_DIR"):
            warmstart.boot(namespace="svc")
        with pytest.raises(ConfigurationError, match="WARMSTART_NAMESPACE"):
            warmstart.boot(tmp_path)
        monkeypatch.setenv("WARMSTART_INTERVAL", "often")
        with pytest.raises(ConfigurationError, match="WARMSTART_INTERVAL"):
            warmstart.boot(tmp_path, namespace="svc")

    def test_the_cli_verifies_what_the_service_wrote(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The Kubernetes case: the service and `warmstart verify` read the same key."""
        key = tmp_path / "key"
        key.write_text("team-key\n")
        monkeypatch.setenv("WARMSTART_DIR", str(tmp_path / "warm"))
        monkeypatch.setenv("WARMSTART_SECRET_FILE", str(key))
        with warmstart.boot(namespace="svc", signals=False):
            Rows().rows["a"] = Row(1)
        out = io.StringIO()
        with redirect_stdout(out):
            assert main(["verify"]) == 0  # PATH from WARMSTART_DIR, the key from the file
        assert out.getvalue().startswith("ok:")
        monkeypatch.delenv("WARMSTART_SECRET_FILE")
        with redirect_stdout(io.StringIO()):
            assert main(["verify"]) == 1  # without the key, every MAC is a mismatch
        with warmstart.Store(tmp_path / "warm", secret=b"team-key") as store:
            assert store.verify().ok

    def test_the_cli_without_a_path(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["stats"]) == 2
        assert "WARMSTART_DIR" in capsys.readouterr().err
