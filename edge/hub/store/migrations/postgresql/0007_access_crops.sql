-- The sealed face crops some edges upload with their access log records (docs/access.md#face-crops):
-- sealed on the edge with a key the hub never holds; the record names the sha256 of these bytes.
CREATE TABLE access_crops (
    appid TEXT NOT NULL, edge_id TEXT NOT NULL, seq BIGINT NOT NULL, sha256 TEXT NOT NULL,
    sealed BYTEA NOT NULL,
    PRIMARY KEY (appid, edge_id, seq)
);
