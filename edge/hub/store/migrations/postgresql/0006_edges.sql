-- What each edge last reported when it synced (edge/hub/store/edges.py; the SQLite store
-- creates the same table): the console's doors at a glance.
CREATE TABLE edge_reports (
    appid TEXT NOT NULL, edge_id TEXT NOT NULL, last_contact DOUBLE PRECISION NOT NULL,
    cursor BIGINT NOT NULL, pack TEXT NOT NULL, liveness TEXT NOT NULL, door TEXT NOT NULL,
    health TEXT NOT NULL,
    PRIMARY KEY (appid, edge_id)
);
-- A person's last change (its deletion): has every edge applied it?
CREATE INDEX changes_by_person ON changes (appid, person_id, seq);
