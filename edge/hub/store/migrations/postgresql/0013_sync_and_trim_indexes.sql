-- Every sync page asking for rules reads the appid's newest `rules` change (MAX(seq) ... kind =
-- 'rules'): with only (appid, seq) that walked the appid's whole change log backwards, 27 ms a page
-- at 200,000 changes, on every idle sync of every door. And the access log's trim (DELETE ... WHERE
-- at < ?, every appid) scanned every record under the write lock: 29 ms at 300,000 records each
-- time, nothing to delete.
CREATE INDEX IF NOT EXISTS changes_by_kind ON changes (appid, kind, seq);
CREATE INDEX IF NOT EXISTS access_records_at ON access_records (at);
