"""Pulling the hub's changes (`POST /face/sync`) into the edge cache and swapping the gallery.

`Syncer.sync_once()` pulls pages from the stored cursor until `has_more` is false; each page is
applied with its cursor in one transaction (edge.daemon.cache), then a new `Gallery` is built and
handed to `on_gallery` (the daemon swaps one reference: readers never lock). `run()` does that
on start, every `interval_s`, and whenever `trigger()` is called (MQTT cmd/sync). With
`site_refusals` (the claims' lockout) the first request also asks for the claims the site's other
doors refused on the face and the lockouts lifted on the hub, and hands them over
(edge.daemon.claim_lockout). A hub that is down leaves the last synced gallery in use: the edge
keeps working offline. A hub that rate limits us (code 15) is asked again after a short,
doubling backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from edge.core import syncwire
from edge.core.matcher import DEFAULT_THRESHOLDS, Gallery, Thresholds
from edge.daemon.cache import CacheError, EdgeCache

if TYPE_CHECKING:
    from edge.api.client import CloudClient

log = logging.getLogger(__name__)


class SiteRefusals(Protocol):
    """Who takes the other doors' refusals (edge.daemon.claim_lockout.ClaimLockout)."""

    def remote_since(self) -> float | None: ...

    def other_doors(self, refusals: Sequence[tuple[str, float]], lifts: Sequence[tuple[str, float]]) -> None: ...


class Syncer:
    def __init__(self, client: CloudClient | None, cache: EdgeCache, fingerprint: str, *,
                 group_ids: list[str] | None = None, page_size: int = 500,
                 interval_s: float = 60.0, thresholds: Thresholds = DEFAULT_THRESHOLDS,
                 on_gallery: Callable[[Gallery], None] | None = None, max_pages: int = 100,
                 report: Callable[[], dict[str, str]] | None = None, site_refusals: SiteRefusals | None = None):
        self.client = client
        self.cache = cache
        self.fingerprint = fingerprint
        self.group_ids = sorted(group_ids or [])
        self.page_size = page_size
        self.interval_s = interval_s
        self.thresholds = thresholds
        self.on_gallery = on_gallery
        # What the edge tells the hub with each sync (edge_id, pack, liveness, door, health:
        # edge.core.syncwire), asked anew each time; `since` then says what it has applied.
        self.report = report
        self.site_refusals = site_refusals  # asked for with a report only: the hub leaves out the edge's own
        self._vanished_after = ""  # on a pack the hub no longer serves: where the next list of changed persons starts
        # Pages per sync_once: a hub answering has_more forever must not hold the sync lock
        # (and a cmd/sync) for ever; a long backlog continues in the next round at once.
        self.max_pages = max_pages
        self.state: dict[str, Any] = {"status": "never", "cursor": cache.cursor, "last_ok": None,
                            "last_error": "", "syncs": 0, "failures": 0, "changes": 0}
        self._trigger = threading.Event()
        self._backoff_s = 0.0
        self._lock = threading.Lock()  # one sync at a time (timer and cmd/sync may race)
        scope = ",".join(self.group_ids)
        if cache.fingerprint != fingerprint or cache.scope != scope:
            # Another embedder (vectors not comparable) or other groups: start from scratch.
            log.info("cache reset: fingerprint/groups changed (%s/%s -> %s/%s)",
                     cache.fingerprint or "-", cache.scope or "-", fingerprint, scope or "-")
            cache.reset(fingerprint, scope)

    def load(self) -> Gallery:
        """The gallery of the last synced state (used at start, before the hub answers)."""
        gallery = self.cache.gallery(self.thresholds)
        if self.on_gallery:
            self.on_gallery(gallery)
        return gallery

    def sync_once(self) -> dict[str, Any]:
        """Pull every page now; returns the state. Never raises for hub or data problems."""
        from edge.api.client import CloudApiError, CloudError, CloudRateLimited, FingerprintMismatch

        client = self.client
        assert client is not None, "only load() works without the hub's client"
        with self._lock:
            pages = changes = 0
            more = False
            fields: dict[str, Any] = {}
            try:
                report = self._report()
                refusals_since = self.site_refusals.remote_since() if self.site_refusals and report else None
                while True:
                    since = self.cache.cursor
                    data = client.sync(since, self.fingerprint,
                                       group_ids=self.group_ids or None, limit=self.page_size,
                                       rules=True, report=report, refusals_since=None if pages else refusals_since,
                                       vanished_after=self._vanished_after)
                    self._note_key(data.get(syncwire.REPORT_KEY), report)
                    if since > 0 and self.cache.dropped_unserved:
                        # the pack is served again after persons were dropped while it was not:
                        # their faces from before the cursor come back only from 0
                        log.warning("sync: the hub serves this edge's pack again: syncing from 0 to take back the "
                                    "persons dropped meanwhile (those held stay until replaced)")
                        self.cache.rewind()
                        continue
                    if self.site_refusals is not None and syncwire.REFUSALS in data:
                        self._take_site_refusals(self.site_refusals, data)
                    batch = data.get("changes") or []
                    if not isinstance(batch, list):
                        raise CacheError("changes is not a list")
                    cursor = data["cursor"]
                    if isinstance(cursor, bool) or not isinstance(cursor, int) or cursor < 0:
                        raise CacheError(f"cursor is not a change number: {cursor!r:.40}")
                    head = data.get(syncwire.HEAD)
                    if head is not None and (isinstance(head, bool) or not isinstance(head, int) or head < 0):
                        raise CacheError(f"{syncwire.HEAD} is not a change number: {head!r:.40}")
                    if head is not None and cursor > head:
                        raise CacheError(f"the hub's cursor {cursor} is past its own newest change {head}")
                    since_mark, cursor_mark = data.get(syncwire.SINCE_MARK), data.get(syncwire.CURSOR_MARK)
                    if not isinstance(cursor_mark, (str, type(None))) or not isinstance(since_mark, (str, type(None))):
                        raise CacheError("the change marks are not text")
                    held = self.cache.cursor_mark
                    if since > 0 and ((head is not None and since > head)
                                      or (held and since_mark is not None and since_mark != held)):
                        # The hub went back (restored from a backup, reinstalled at the same url):
                        # its change at this cursor is another one or none, its next changes
                        # reuse numbers this cache took as seen (a deletion among them: the
                        # person kept passing). Start again from 0.
                        self._hub_went_back(since, head)
                        continue
                    if data.get("has_more") and batch and cursor <= since:
                        # Same page again and again: applying it would loop for ever.
                        raise CacheError(f"has_more with a cursor that does not advance ({since} -> {cursor})")
                    hub_rules = data.get(syncwire.RULES_VERSION)
                    if hub_rules is not None and (isinstance(hub_rules, bool) or not isinstance(hub_rules, int)
                                                  or hub_rules < 0):
                        raise CacheError(f"{syncwire.RULES_VERSION} is not a version: {hub_rules!r:.40}")
                    changes += self.cache.apply_page(batch, cursor, hub_rules, cursor_mark)
                    pages += 1
                    # A reporting edge asks once more after applying changes (an empty page,
                    # normally): the hub then knows the cursor it has now, not the one before
                    # (a deletion is seen to have reached this door without waiting an interval).
                    # An empty page with more after it: rows of other groups the hub left out.
                    more_pages = bool(data.get("has_more")) and cursor > since
                    if not more_pages and (not batch or report is None or cursor <= since):
                        break
                    if pages >= self.max_pages:
                        more = True
                        self._trigger.set()  # more to pull: the next round starts right away
                        break
            except CloudApiError as exc:
                status = "fingerprint_mismatch" if isinstance(exc, FingerprintMismatch) else "error"
                fields = self._failed(status, f"hub answered {exc.code}: {exc.message}")
                if isinstance(exc, FingerprintMismatch):
                    self._drop_vanished(exc.data)
            except CloudRateLimited as exc:  # pages applied so far stay; run() resumes soon
                fields = self._failed("rate_limited", f"hub rate limit: {exc}")
            except CloudError as exc:
                fields = self._failed("offline", f"hub unreachable: {exc}")
            except (CacheError, KeyError, TypeError, ValueError) as exc:
                fields = self._failed("error", f"bad sync page: {exc}")
            except Exception as exc:  # anything else a page caused: the pages applied so far are loaded below
                log.exception("sync: a page could not be applied")
                fields = self._failed("error", f"bad sync page: {type(exc).__name__}: {exc}"[:300])
            else:
                if more:  # "ok" means caught up with the hub; not yet
                    fields = {"status": "syncing", "last_error": ""}
                else:
                    fields = {"status": "ok", "last_ok": time.time(), "last_error": "",
                              "syncs": self.state["syncs"] + 1}
            if changes:
                self.load()  # swap in the new gallery (even after a failed page: pages are whole)
            # One update: /health (another thread) must never see "ok" beside the old cursor.
            self.state.update(fields, changes=self.state["changes"] + changes, cursor=self.cache.cursor,
                              pages_last=pages)
            return dict(self.state)

    def _drop_vanished(self, data: dict) -> None:
        """The persons the hub says changed (gone, re-enrolled, a face removed, cards changed), dropped
        although it serves no page for this edge's pack: a deleted person kept passing here until
        the edge moved to the new pack."""
        try:
            vanished = syncwire.decode_vanished(data.get(syncwire.VANISHED, []))
        except syncwire.MalformedChange as exc:
            log.warning("the hub's list of persons gone left out: %s", exc)
            return
        # a full list: the next sync asks for the persons after its last; else from the start again
        self._vanished_after = vanished[-1] if len(vanished) >= syncwire.MAX_VANISHED else ""
        gone = self.cache.forget_persons(vanished) if vanished else 0
        if gone:
            log.warning("sync: %d person(s) the hub deleted or changed dropped from the cache, as the hub no longer "
                        "serves this edge's pack (pull the hub's pack: `edge-verifier models pull`)", gone)
            self.load()

    def _hub_went_back(self, since: int, head: int | None) -> None:
        log.error("the hub's change %d is not the one this edge synced up to (its newest is %s): the hub went "
                  "back (restored from a backup?); the cache is emptied and synced again from 0 (nobody passes "
                  "meanwhile)", since, head)
        self.cache.reset(self.fingerprint, ",".join(self.group_ids))
        self.load()  # the door stops deciding on persons the hub may no longer have
        self.state["resyncs"] = self.state.get("resyncs", 0) + 1

    def _note_key(self, kind: object, report: dict[str, str] | None) -> None:
        """What the hub says of the key this edge syncs with (`sync.hub_key` in /health); a key
        of the whole appid is logged once: whoever takes this card could enrol anyone with it."""
        if kind not in (syncwire.KEY_EDGE, syncwire.KEY_APPID) or kind == self.state.get("hub_key"):
            return
        self.state["hub_key"] = kind
        if kind == syncwire.KEY_APPID:
            log.warning("this edge syncs with a hub key of its whole appid: whoever takes its card could enrol "
                        "anyone with it. Give it a key of its own: `edge-verifier hub edgekey --edge-id %s` on "
                        "the hub (docs/security.md#keys-and-files)", (report or {}).get("edge_id", "ID"))

    @staticmethod
    def _take_site_refusals(site: SiteRefusals, data: dict) -> None:
        """Hand the other doors' refusals and the lifts over; a malformed list is logged and
        left out, never in the way of the changes (a deletion must reach the door)."""
        try:
            refusals = syncwire.decode_refusals(data[syncwire.REFUSALS])
            lifts = syncwire.decode_refusals(data.get(syncwire.LIFTS, []), syncwire.LIFTS)
        except syncwire.MalformedChange as exc:
            log.warning("the hub's claim refusals left out: %s", exc)
            return
        site.other_doors(refusals, lifts)

    def _report(self) -> dict[str, str] | None:
        if self.report is None:
            return None
        try:
            return self.report()
        except Exception:  # a report that fails to build never stops the sync
            log.exception("sync report failed")
            return None

    def _failed(self, status: str, message: str) -> dict[str, Any]:
        """The state fields of a failed sync (logged here, applied by the caller)."""
        log.warning("sync failed: %s", message)
        return {"status": status, "last_error": message, "failures": self.state["failures"] + 1}

    def _next_wait(self) -> float:
        """The interval; after a rate-limited sync a backoff from 1 s doubling (capped at the
        interval), so the edge resumes as soon as the hub lets it instead of an interval later."""
        if self.state["status"] != "rate_limited":
            self._backoff_s = 0.0
            return self.interval_s
        self._backoff_s = min(max(1.0, self._backoff_s * 2), self.interval_s)
        return self._backoff_s

    def trigger(self) -> None:
        self._trigger.set()

    def run(self, stop: threading.Event) -> None:
        """Sync now, then every interval or when triggered, until `stop`."""
        while not stop.is_set():
            try:
                self.sync_once()
            except Exception:  # a dead sync thread would freeze the gallery unnoticed
                log.exception("sync failed unexpectedly")
                self.state.update(self._failed("error", "internal error (see the log)"))
            self._trigger.wait(self._next_wait())
            self._trigger.clear()
            if stop.is_set():
                break
