-- When the hub received each access record, which retention ([storage] access_log_days) counts
-- from (edge/hub/store/access.py). Trimmed by `at`, the door's clock, the records of a Pi started
-- offline after weeks switched off (no battery clock: dated weeks back) went within a minute of
-- their upload, and the door, its clock corrected, pruned its own copies. The records stored
-- before count as received when they happened (as they were trimmed until now).
ALTER TABLE access_records ADD COLUMN received DOUBLE PRECISION NOT NULL DEFAULT 0;
UPDATE access_records SET received = at;
CREATE INDEX access_records_received ON access_records (received);
-- the trim's index (0013): nothing else reads access_records by `at` alone
DROP INDEX IF EXISTS access_records_at;
