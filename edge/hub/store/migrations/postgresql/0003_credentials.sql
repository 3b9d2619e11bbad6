-- A person's credentials (card numbers with their format, edge/core/credentials.py), as the
-- canonical JSON of each, in the order given; one card names one person of an appid.
CREATE TABLE credentials (
    appid TEXT NOT NULL, person_id TEXT NOT NULL, position INTEGER NOT NULL, credential TEXT NOT NULL,
    PRIMARY KEY (appid, person_id, position),
    FOREIGN KEY (appid, person_id) REFERENCES persons (appid, person_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX credentials_unique ON credentials (appid, credential);
