"""Uploading the edge's access log to the hub (`POST /face/uploadlog`), exactly once.

`Uploader(client, log, edge_id).run_once()` sends the records after the log's upload cursor in
batches over the signed channel sync uses (edge.api.client), and moves the cursor to the head
the hub reports after each batch it stored. A batch the hub already has (the answer was lost to
an outage or a restart of either side) is stored once: the hub skips records it holds by seq
and hash. The hub checks every batch against its copy of the chain; a refusal (-1520 gap,
-1521 edited, -1522 malformed) stops the upload and is reported, never skipped over; a gap
before the cursor (a hub restored from a backup) sends the records after the hub's end again,
while the log holds them. After an upload the log is pruned to its retention (records the hub
holds, older than retention_days).

With `with_crops` (`[door] log_face_crops` and `upload_face_crops`), each batch also carries the
sealed face crops of its records (base64), and is cut short so that the request stays under
the hub's body cap; the hub checks each crop against the sha256 its record names.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from edge.core.access_chain import LOG_GAP, PROBLEM_CODES, canonical
from edge.door.access_log import AccessLog

if TYPE_CHECKING:
    from edge.api.client import CloudClient

log = logging.getLogger(__name__)

CROP_BUDGET = 512 * 1024  # sealed crop bytes per batch: base64 and the records stay under the hub's 1 MiB
# Each record woke the upload at once: one record a request, its cursor committed (fsync'd) and
# the log pruned each time, about 6 fsyncs and 130 KB written per decision on the SD card. A
# wake-up now gathers what follows for GATHER_S, and pruning (retention: days) runs at most
# every PRUNE_EVERY_S.
GATHER_S = 2.0
PRUNE_EVERY_S = 3600.0


class Uploader:
    def __init__(self, client: CloudClient, access_log: AccessLog, edge_id: str, *, batch: int = 200,
                 interval_s: float = 30.0, max_batches: int = 50, with_crops: bool = False):
        self.client = client
        self.log = access_log
        self.edge_id = edge_id
        self.batch = batch
        self.interval_s = interval_s
        self.max_batches = max_batches  # per run: a long backlog goes on next round
        self.with_crops = with_crops
        self.state: dict[str, Any] = {"status": "never", "uploaded": access_log.uploaded, "sent": 0,
                                      "refused": 0, "last_error": ""}
        self._trigger = threading.Event()
        self._pruned_at: float | None = None  # monotonic: the last prune (None: not yet)

    def run_once(self) -> dict[str, Any]:
        """Send what the hub lacks; the state. Never raises for hub trouble."""
        from edge.api.client import CloudApiError, CloudError

        sent = 0
        status, error = "ok", ""
        try:
            for _ in range(self.max_batches):
                records = self.log.records(self.log.uploaded, self.batch)
                if not records:
                    break
                crops = None
                if self.with_crops:
                    records, crops = self._crops_of(records)
                answer = self.client.uploadlog(self.edge_id, canonical(records), crops=crops)
                head = int(answer.get("head", 0))
                if head < records[-1]["seq"]:  # the hub must hold the whole batch now
                    raise CloudError(f"the hub's chain ends at {head}, not {records[-1]['seq']}")
                # the batch's end, never the hub's head: a log restored from a backup is behind the
                # hub, which answered its own head, and the records written next were skipped
                self.log.mark_uploaded(records[-1]["seq"])
                sent += int(answer.get("stored", 0))
            else:
                self._trigger.set()  # more to send: the next round starts at once
        except CloudApiError as exc:
            status, error = ("refused" if exc.code in PROBLEM_CODES.values() else "error"), f"{exc.code}: {exc.message}"
            their_end = exc.data.get("head") if exc.code == LOG_GAP else None
            if isinstance(their_end, int) and not isinstance(their_end, bool) and their_end < self.log.uploaded:
                # the hub went back (restored from a backup): what it lacks goes again, while held
                if self.log.resend_after(their_end):
                    log.warning("access log: the hub's copy ends at record %d, before this edge's cursor: sending "
                                "the records after it again (a hub restored from a backup?)", their_end)
                    self._trigger.set()
                else:
                    error += " (the hub lacks records this edge already counted as uploaded and has pruned)"
            log.error("access log upload refused by the hub: %s", error)
            self.state["refused"] += status == "refused"
        except CloudError as exc:
            status, error = "offline", str(exc)
        if status == "ok" and (self._pruned_at is None or time.monotonic() - self._pruned_at >= PRUNE_EVERY_S):
            self._pruned_at = time.monotonic()
            self.log.prune()  # retention: only what the hub now holds may go
        self.state.update(status=status, last_error=error, uploaded=self.log.uploaded, sent=self.state["sent"] + sent,
                          last_run=time.time())
        return dict(self.state)

    def _crops_of(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
        """The batch, cut where its crops would pass CROP_BUDGET (one record at least), and its
        crops as JSON text (None when it has none)."""
        sealed = self.log.crops(records[0]["seq"], records[-1]["seq"])
        crops: list[dict[str, Any]] = []
        size = 0
        for i, record in enumerate(records):
            crop = sealed.get(record["seq"])
            if crop is None:
                continue
            size += len(crop)
            if crops and size > CROP_BUDGET:
                records = records[:i]
                break
            crops.append({"seq": record["seq"], "sealed": base64.b64encode(crop).decode()})
        return records, canonical(crops) if crops else None

    def trigger(self) -> None:
        self._trigger.set()

    def run(self, stop: threading.Event) -> None:
        """Upload now, then every interval or when triggered, until `stop`."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:  # a dead upload thread would let the backlog grow unnoticed
                log.exception("access log upload failed unexpectedly")
            if self._trigger.wait(self.interval_s):
                stop.wait(GATHER_S)  # the records that follow go in the same request
            self._trigger.clear()
