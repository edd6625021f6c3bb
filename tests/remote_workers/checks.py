"""Checks shared by the remote tests: save and load a section, what a remote holds."""

from __future__ import annotations

from typing import Any

import warmstart
from conftest import RECORDS, Record
from warmstart.remote import Remote
from warmstart.remote._layout import Layout, decode_head, remote_manifest
from warmstart.remote._sync import namespace_dir


def save(store: warmstart.Store, data: Any, namespace: str = "svc", **kwargs: Any) -> int:
    return store.save(namespace, {"records": (RECORDS, data)}, **kwargs)


def loaded(store: warmstart.Store, namespace: str = "svc") -> Any:
    with store.load(namespace) as snapshot:
        return snapshot.section("records", RECORDS)


def change(data: Any, fraction: float, salt: int) -> None:
    step = max(1, int(1 / fraction))
    for i, key in enumerate(list(data)):
        if i % step == 0:
            data[key] = Record(i + salt, f"changed{salt}", -1.0, [salt], False, "z")


def keys_of(remote: Remote, namespace: str) -> dict[str, list[str]]:
    """The remote keys of a namespace, by kind (chunks, manifests, head)."""
    out: dict[str, list[str]] = {"chunks": [], "manifests": [], "head": []}
    prefix = namespace_dir(namespace)
    for key in remote.list(prefix):
        kind = key[len(prefix) :].split("/")[0]
        out[kind].append(key)
    return out


def assert_complete(remote: Remote, namespace: str, codec: warmstart.codec.Codec) -> None:
    """Every retained generation's manifest verifies and every chunk it names exists."""
    layout = Layout(namespace)
    raw = remote.get_head(layout.head)
    assert raw is not None
    head = decode_head(raw, remote.url)
    assert head.history[0] == (head.generation, head.manifest)
    for _, name in head.history:
        manifest = remote_manifest(remote, layout, codec, name)
        wanted = [layout.chunk(d) for d in manifest.digests()]
        assert set(remote.stat(wanted)) == set(wanted)
