-- Access rules (one versioned document per appid, edge/core/access_rules.py) and the access
-- log the edges upload (edge/hub/store/access.py; the SQLite store creates the same tables).
CREATE TABLE access_rules (
    appid TEXT PRIMARY KEY, version INTEGER NOT NULL, document TEXT NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
-- One hash chain per edge: the last record stored (seq, hash) and the uploads refused.
CREATE TABLE access_chains (
    appid TEXT NOT NULL, edge_id TEXT NOT NULL, seq BIGINT NOT NULL, hash TEXT NOT NULL,
    refused BIGINT NOT NULL DEFAULT 0, last_refusal TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (appid, edge_id)
);
CREATE TABLE access_records (
    appid TEXT NOT NULL, edge_id TEXT NOT NULL, seq BIGINT NOT NULL, record_id TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL, door TEXT NOT NULL, person_id TEXT NOT NULL,
    decision TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL, hash TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (appid, edge_id, seq)
);
CREATE UNIQUE INDEX access_records_by_id ON access_records (appid, edge_id, record_id);
CREATE INDEX access_records_by_person ON access_records (appid, person_id, at);
CREATE INDEX access_records_by_door ON access_records (appid, door, at);
CREATE INDEX access_records_by_time ON access_records (appid, at);
