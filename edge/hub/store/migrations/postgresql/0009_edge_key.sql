-- Which kind of hub key each edge last synced with (edge/hub/store/edges.py: "edge", one bound
-- to it; "appid", one of its whole appid; "" before this): the console's doors page flags the
-- doors whose taken card could enrol anyone.
ALTER TABLE edge_reports ADD COLUMN key TEXT NOT NULL DEFAULT '';
