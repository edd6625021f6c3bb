"""How a boot saves: its live objects' sections, the sections it carries, and the report.

Private to the boot wing. One checkpoint (explicit, periodic or the
shutdown one) goes through :meth:`Saver.save`, which never raises unless the
boot is strict, and always answers with a :class:`CheckpointReport` that
says what was saved, carried, failed or skipped and why (0.1 returned None
for "nothing to save" and for every failure alike):

- nothing attached: no generation (it would replace the head with an empty
  one); a WARNING says how to attach objects built before the boot opened;
- unchanged since the restore: skipped, nothing to write (and an idle copy,
  such as a pre-forking server's master, never replaces the head its
  workers wrote; see ``_pristine``);
- otherwise one ``Store.checkpoint``: a section that cannot be read or
  encoded costs only itself (it is carried forward as it was), and the
  sections of the restored generation that no live object claims (an object
  built lazily, not built in this run) are carried forward by reference
  unless ``carry_forward=False`` or ``boot.forget(section)``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from warmstart._pacing import Pacer
from warmstart.boot._attachments import Attached
from warmstart.boot._pristine import Pristine
from warmstart.boot._sections import sections_of
from warmstart.boot._settings import BootSettings
from warmstart.metrics import BootReport, CheckpointReport, Metrics
from warmstart.store import SectionSpec, Store

__all__ = ("Saver",)

log = logging.getLogger("warmstart.boot")


class Saver:
    """Saves one boot's state into its store."""

    def __init__(
        self,
        settings: BootSettings,
        metrics: Metrics,
        boot_report: BootReport,
        watermark: Callable[[], Any],
        remote_outcomes: dict[str, Any],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._boot_report = boot_report
        self._watermark = watermark
        self._remote_outcomes = remote_outcomes
        #: Sections of the generation restored, for carrying forward.
        self.restored_sections: frozenset[str] = frozenset()
        #: Sections let go with ``boot.forget()``.
        self.forgotten: set[str] = set()
        #: The restored state, until this process first saves.
        self.pristine: Pristine | None = None
        #: Sets the version each ``write_version="auto"`` contract writes (``_agent``).
        self.expose: Callable[[dict[str, SectionSpec]], dict[str, SectionSpec]] | None = None
        self._warned_empty = False

    def report(self, why: str, status: str, started: float, **fields: Any) -> CheckpointReport:
        """A report of this checkpoint, folded into the metrics and the boot's report."""
        report = CheckpointReport(
            namespace=self.settings.namespace,
            reason=why,
            status=status,  # type: ignore[arg-type]
            seconds=time.perf_counter() - started,
            **fields,
        )
        self.metrics.record_checkpoint(report)
        self._boot_report.add_checkpoint(report)
        return report

    def nothing_attached(self, why: str, started: float) -> CheckpointReport:
        """No object to save: say so (once at WARNING) and write nothing."""
        text = (
            f"{why} checkpoint of {self.settings.namespace!r}: nothing is attached, nothing "
            f"saved; objects built before the boot opened must be attached with boot.attach(obj)"
        )
        if not self._warned_empty:
            self._warned_empty = True
            log.warning(text)
        else:
            log.info(text)
        return self.report(why, "nothing", started, generation=None, error="nothing attached")

    def save(
        self, store: Store, attached: list[Attached], why: str, *, raise_errors: bool
    ) -> CheckpointReport:
        """Take one checkpoint of ``attached`` (the boot holds its lock, no restore runs)."""
        started = time.perf_counter()
        settings = self.settings
        claimed = {name for item in attached for name in item.sections.values()}
        carry = self._carry(claimed)
        # Measures the checkpoint's CPU and its longest stretch between yields
        # (_pacing); everything inside that is O(entries) works in slices.
        pacer = Pacer()
        try:
            with pacer:
                skip = self._unchanged(store, attached, claimed | carry)
                if skip is None:
                    sections = sections_of(attached)
                    if self.expose is not None:
                        sections = self.expose(sections)
                    result = store.checkpoint(
                        settings.namespace,
                        sections,
                        watermark=self._watermark(),
                        # With an interval, untracked mappings keep fingerprints
                        # so that each periodic checkpoint is a delta.
                        mode="auto" if settings.interval is None else "delta",
                        carry=carry,
                        isolate=not raise_errors,  # strict: the first bad section raises
                    )
                    if result.generation is not None and self.pristine is not None:
                        # This process is a writer now. Its references to what it
                        # restored go a slice a step, inside the pacer: dropped at
                        # once, a million entries held the GIL for 18 ms.
                        pristine, self.pristine = self.pristine, None
                        pristine.release()
        except Exception as exc:
            # Never let a checkpoint failure reach the service (unless strict).
            log.warning("%s checkpoint of %r failed: %s", why, settings.namespace, exc)
            if raise_errors:
                raise
            cost = pacer.costs()
            return self.report(why, "failed", started, generation=None, error=str(exc), **cost)
        cost = pacer.costs()
        if skip is not None:
            log.info("%s checkpoint of %r skipped: %s", why, settings.namespace, skip)
            return self.report(why, "skipped", started, generation=None, error=skip, **cost)
        for section, error in result.failed.items():
            log.warning(
                "%s checkpoint of %r: section %r not saved (%s)%s",
                why,
                settings.namespace,
                section,
                error,
                "; its previous state is kept" if section in result.carried else "",
            )
        status = "saved" if not result.failed else ("partial" if result.saved else "failed")
        report = self.report(
            why,
            status,
            started,
            generation=result.generation,
            saved=result.saved,
            carried=result.carried,
            failed=result.failed,
            error=None if not result.failed else f"{len(result.failed)} sections failed",
            **cost,
        )
        log.info(
            "%s checkpoint of %r: generation %s in %.3fs (%.1f ms CPU, longest hold %.1f ms, "
            "longest collection %.1f ms; %d saved, %d carried, %d failed)",
            why,
            settings.namespace,
            result.generation,
            report.seconds,
            1000 * report.cpu_seconds,
            1000 * report.longest_hold_seconds,
            1000 * report.longest_collection_seconds,
            len(result.saved),
            len(result.carried),
            len(result.failed),
            extra={
                "namespace": settings.namespace,
                "generation": result.generation,
                "seconds": report.seconds,
                "cpu_seconds": report.cpu_seconds,
                "longest_hold_seconds": report.longest_hold_seconds,
                "longest_collection_seconds": report.longest_collection_seconds,
            },
        )
        if settings.remote is not None and result.generation is not None:
            from warmstart.remote import push_with_deadline  # noqa: PLC0415 - an optional tier

            self._remote_outcomes["push"] = push_with_deadline(
                store, settings.remote, settings.namespace, deadline=settings.remote_deadline
            )
        return report

    def _carry(self, claimed: Iterable[str]) -> frozenset[str]:
        if not self.settings.carry_forward:
            return frozenset()
        return self.restored_sections - set(claimed) - self.forgotten

    def _unchanged(self, store: Store, attached: list[Attached], written: set[str]) -> str | None:
        """Why there is nothing to write (the state is as restored), or None."""
        pristine = self.pristine
        if pristine is None or written != self.restored_sections:
            return None  # sections to let go or new ones: a change
        if not pristine.unchanged(attached):
            return None
        reason = f"nothing changed since generation {pristine.generation} was restored"
        with store.read() as reader:
            head = reader.head(self.settings.namespace)
        if head is not None and head[0] != pristine.generation:
            reason += f"; generation {head[0]}, written since by another process, stays the head"
        return reason
