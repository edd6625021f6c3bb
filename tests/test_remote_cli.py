"""The push, pull and ls --remote commands (warmstart.remote.cli)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

import warmstart
from conftest import make_records
from remote_workers.checks import loaded, save
from warmstart.cli._remote import cmd_ls, register
from warmstart.remote import FileRemote


def run(*argv: str) -> int:
    """Parse like the warmstart command does (shared --json, --secret-file) and run."""
    parser = argparse.ArgumentParser(prog="warmstart")
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument("--json", action="store_true")
    shared.add_argument("--secret-file")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub, parents=[shared])
    ls = sub.add_parser("ls", parents=[shared])
    ls.add_argument("--remote", required=True)
    ls.set_defaults(handler=cmd_ls)
    args = parser.parse_args(argv)
    return int(args.handler(args))


@pytest.fixture
def url(tmp_path: Path) -> str:
    return (tmp_path / "remote").as_uri()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    with warmstart.Store(tmp_path / "a", sync=False) as store:
        save(store, make_records(100), "tenant-1/svc")
    return tmp_path / "a"


class TestPushPull:
    def test_push_then_pull_print_what_moved(self, tmp_path, store_path, url, capsys):
        """push and pull say what they shipped, and the pulled store loads equal."""
        assert run("push", str(store_path), "tenant-1/svc", "--remote", url) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"pushed tenant-1/svc generation 1 to {url} as remote generation 1:")
        assert "1 chunk shipped" in out
        assert run("pull", str(tmp_path / "b"), "tenant-1/svc", "--remote", url) == 0
        out = capsys.readouterr().out
        assert out.startswith("pulled tenant-1/svc remote generation 1 from")
        assert "1 chunk fetched" in out
        with warmstart.Store(tmp_path / "b") as b:
            assert loaded(b, "tenant-1/svc") == make_records(100)

    def test_repeats_say_nothing_changed(self, tmp_path, store_path, url, capsys):
        """A second push or pull says the state is already there."""
        run("push", str(store_path), "tenant-1/svc", "--remote", url)
        run("pull", str(tmp_path / "b"), "tenant-1/svc", "--remote", url)
        capsys.readouterr()
        run("push", str(store_path), "tenant-1/svc", "--remote", url)
        assert "already is the head" in capsys.readouterr().out
        run("pull", str(tmp_path / "b"), "tenant-1/svc", "--remote", url)
        assert "is already in" in capsys.readouterr().out
        run("pull", str(tmp_path / "b"), "tenant-1/svc", "--remote", url, "--if-newer")
        assert "nothing pulled" in capsys.readouterr().out

    def test_json_output(self, tmp_path, store_path, url, capsys):
        """--json prints the report as JSON."""
        run("push", str(store_path), "tenant-1/svc", "--remote", url, "--json")
        report: dict[str, Any] = json.loads(capsys.readouterr().out)
        assert (report["status"], report["generation"], report["chunks_shipped"]) == (
            "pushed",
            1,
            1,
        )

    def test_remote_from_the_environment(self, store_path, url, capsys, monkeypatch):
        """$WARMSTART_REMOTE stands in for --remote."""
        monkeypatch.setenv("WARMSTART_REMOTE", url)
        assert run("push", str(store_path), "tenant-1/svc") == 0
        assert "pushed" in capsys.readouterr().out

    def test_secret_file_is_used(self, tmp_path, url, capsys):
        """--secret-file opens keyed stores on both sides."""
        secret = tmp_path / "secret"
        secret.write_bytes(b"team-key\n")
        with warmstart.Store(tmp_path / "k", secret=b"team-key", sync=False) as store:
            save(store, make_records(10))
        run("push", str(tmp_path / "k"), "svc", "--remote", url, "--secret-file", str(secret))
        run("pull", str(tmp_path / "k2"), "svc", "--remote", url, "--secret-file", str(secret))
        with warmstart.Store(tmp_path / "k2", secret=b"team-key") as store:
            assert loaded(store) == make_records(10)
        assert "pulled" in capsys.readouterr().out

    def test_behind_is_explained(self, tmp_path, url, capsys, clock):
        """Pushing an older state over a newer head explains why nothing was pushed."""
        with (
            warmstart.Store(tmp_path / "old", sync=False, clock=clock) as old,
            warmstart.Store(tmp_path / "new", sync=False, clock=clock) as new,
        ):
            save(old, make_records(1))
            clock.advance(10)
            save(new, make_records(2))
        run("push", str(tmp_path / "new"), "svc", "--remote", url)
        run("push", str(tmp_path / "old"), "svc", "--remote", url)
        assert "--force pushes anyway" in capsys.readouterr().out
        run("push", str(tmp_path / "old"), "svc", "--remote", url, "--force")
        assert "as remote generation 2" in capsys.readouterr().out


class TestLs:
    def test_lists_every_namespace(self, store_path, url, capsys):
        """ls --remote shows each namespace's head, size and retained generations."""
        run("push", str(store_path), "tenant-1/svc", "--remote", url)
        capsys.readouterr()
        assert run("ls", "--remote", url) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split() == [
            "NAMESPACE",
            "GEN",
            "ENTRIES",
            "SIZE",
            "SAVED",
            "HOST",
            "RETAINED",
        ]
        assert lines[1].split()[:3] == ["tenant-1/svc", "1", "100"]

    def test_empty_remote_and_json(self, url, capsys):
        """An empty remote says so; --json gives a list."""
        FileRemote(Path(url[len("file://") :]))
        run("ls", "--remote", url)
        assert capsys.readouterr().out.startswith("no namespaces on")
        run("ls", "--remote", url, "--json")
        assert json.loads(capsys.readouterr().out) == []
