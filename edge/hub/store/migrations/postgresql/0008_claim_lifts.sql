-- Lockouts lifted on the hub (edge/hub/store/claim_lifts.py; the SQLite store creates the same
-- table): a person's last lift, after which their refused claims no longer count at any door.
CREATE TABLE claim_lifts (
    appid TEXT NOT NULL, person_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, lifted_by TEXT NOT NULL,
    PRIMARY KEY (appid, person_id)
);
