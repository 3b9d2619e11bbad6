-- The groups each edge's sync last asked for (edge/hub/store/edges.py, JSON; [] every group): the
-- console's doors page puts them in the `hub edgekey --group` command it shows for a door still
-- on the appid's key, so the key it makes holds that door's people only.
ALTER TABLE edge_reports ADD COLUMN groups TEXT NOT NULL DEFAULT '[]';
