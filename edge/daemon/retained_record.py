"""The retained topics a daemon announced, kept in its data directory (`retained-topics.json`),
so that the next run can take back the ones it no longer keeps.

A retained message stays on the broker until it is replaced or emptied. Renaming `[door] name`,
turning `[mqtt] ha_discovery` off or changing the device's id left the earlier run's Home
Assistant discovery configs and door state behind: Home Assistant kept showing the old lock and
sensors with their last state, available, and a consumer read a door state nobody updated. Each
start compares what it will announce with what the last run did; the difference is emptied at
connect (an empty retained message deletes the broker's copy, and Home Assistant removes an
entity whose config is emptied).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from edge.core.settings import write_private

log = logging.getLogger("edge.daemon")

FILE_NAME = "retained-topics.json"
MAX_TOPICS = 1000  # a record is a handful of topics; a larger file is not one of ours


def stale_retained(path: Path, announced: list[str]) -> list[str]:
    """The topics the record at `path` names that `announced` does not (a file that cannot be
    read is taken as none, and said). The record is rewritten by `write_record` once they were
    emptied: written before, a run that never reached the broker lost them for good."""
    before: list[str] = []
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, list) and len(data) <= MAX_TOPICS and all(isinstance(t, str) for t in data):
                before = data
            else:
                raise ValueError("not a list of topics")
        except (OSError, ValueError) as exc:
            log.warning("%s cannot be read (%s): retained topics of earlier runs are not taken back", path,
                        type(exc).__name__)
    stale = [t for t in before if t not in set(announced)]
    if stale:
        log.warning("taking back %d retained topic(s) an earlier run announced and this one does not: %s",
                    len(stale), ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else ""))
    return stale


def write_record(path: Path, announced: list[str]) -> None:
    try:
        write_private(path, json.dumps(announced))
    except OSError as exc:
        log.warning("%s cannot be written (%s): a later change will not take these topics back", path,
                    type(exc).__name__)
