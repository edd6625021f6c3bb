"""How the ``warmstart`` command writes: JSON, aligned tables, sizes, ages, progress.

Private; used by the ``_cli_*`` command modules. Every command prints either
``--json`` (through one encoder that turns untyped values such as msgpack
extensions into something JSON can hold) or plain text built from these
helpers, so that sizes, durations and tables read the same in every command.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import msgspec

from warmstart.progress import Progress

__all__ = ()


def _enc_hook(obj: Any) -> Any:
    # Untyped data (watermarks, raw entries) may hold msgpack extensions.
    if isinstance(obj, msgspec.msgpack.Ext):
        return {"ext": obj.code, "data": bytes(obj.data).hex()}
    return repr(obj)


_json_encoder = msgspec.json.Encoder(enc_hook=_enc_hook)


def builtins(obj: Any) -> Any:
    """``obj`` (a report struct, say) as plain lists, dicts and scalars."""
    return msgspec.to_builtins(obj, enc_hook=_enc_hook)


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON: a command's whole ``--json`` output."""
    print(msgspec.json.format(_json_encoder.encode(data), indent=2).decode())


def json_line(data: Any) -> str:
    """``data`` as JSON on one line, for a value inside plain-text output."""
    return _json_encoder.encode(data).decode()


def size(n: float) -> str:
    """A byte count in decimal units: ``999 B``, ``1.5 kB``, ``2.0 GB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop always returns


def duration(seconds: float | None) -> str:
    """A duration in its two largest units: ``42s``, ``3m07s``, ``4h02m``, ``3d02h``."""
    if seconds is None:
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def iso(ts: float) -> str:
    """A Unix time as UTC ISO 8601 to the second: ``2023-11-14T22:13:20Z``."""
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def plural(n: int, word: str) -> str:
    """``1 chunk``, ``2 chunks``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: set[int]) -> str:
    """Align ``rows`` in columns under ``headers`` (``numeric`` columns to the right)."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


class ProgressLine:
    """Draws a progress line with an ETA on a terminal, at most ten times a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = 0.0
        self.drawn = False

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.bytes_done < p.bytes_total and now - self.last < 0.1:
            return
        self.last = now
        self.drawn = True
        self.stream.write(
            f"\r{p.operation}ing {size(p.bytes_done)} / {size(p.bytes_total)}"
            f"  {p.fraction:4.0%}  {p.chunks_done}/{p.chunks_total} chunks"
            f"  {size(p.rate)}/s  ETA {duration(p.eta)}\x1b[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()


def progress() -> ProgressLine | None:
    """A progress line on stderr if stderr is a terminal, else None (no progress)."""
    return ProgressLine(sys.stderr) if sys.stderr.isatty() else None
