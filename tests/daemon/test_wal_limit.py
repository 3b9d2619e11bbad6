"""After one large transaction a -wal file kept its largest size for good (SQLite reuses it from
the start but never shrinks it): a cache emptied for a new pack or other groups, 5,000 faces,
left 20.8 MB beside cache.db on the SD card until the daemon stopped. open_durable sets
journal_size_limit: the next checkpoint shrinks it."""
import os

import numpy as np

from edge.daemon.cache import EdgeCache


def test_wal_shrinks_after_a_large_transaction(tmp_path):
    cache = EdgeCache(tmp_path / "cache.db", dim=512)
    with cache._lock:  # 5,000 faces, as a sync would leave them
        cache._db.execute("BEGIN")
        cache._db.executemany("INSERT INTO faces VALUES (?,?,?,?)",
                              [(f"f{i}", f"p{i}", np.ones(512, dtype="<f4").tobytes(), 1.0) for i in range(5000)])
        cache._db.execute("COMMIT")
    cache._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache.reset("other-fingerprint", "staff")  # a new pack: every face deleted in one transaction
    cache._db.execute("PRAGMA wal_checkpoint(PASSIVE)")  # what autocheckpoint does
    cache.apply_page([], cursor=1)  # the next small commit (a page that moves the cursor)
    wal = os.path.getsize(tmp_path / "cache.db-wal")
    assert wal <= 4 * 1024 * 1024 + 65536, f"-wal is {wal / 1e6:.1f} MB after the reset and a small commit"
