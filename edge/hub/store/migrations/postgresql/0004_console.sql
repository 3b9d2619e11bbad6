-- The web console's accounts, sessions and login failures (edge/hub/store/console.py; the
-- SQLite store creates the same tables). An account belongs to one appid and acts as it.
CREATE TABLE console_accounts (
    username TEXT PRIMARY KEY, appid TEXT NOT NULL, role TEXT NOT NULL,
    password TEXT NOT NULL, created DOUBLE PRECISION NOT NULL
);
-- Only a session token's sha256 is kept: a copy of the database opens no session.
CREATE TABLE console_sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES console_accounts (username) ON DELETE CASCADE,
    created DOUBLE PRECISION NOT NULL, last_seen DOUBLE PRECISION NOT NULL
);
CREATE INDEX console_sessions_by_user ON console_sessions (username);
-- Failed logins per account and per client address, counted over a window (the rate limit).
CREATE TABLE console_login_failures (key TEXT NOT NULL, time DOUBLE PRECISION NOT NULL);
CREATE INDEX console_login_failures_by_key ON console_login_failures (key, time);
