-- Each decision record's lockout mark (detail.claim_lockout: refused or admitted) in a column of
-- its own (edge/hub/store/access.py), read by edge/hub/claim_refusals.py with this index, a
-- bounded number per edge: a door uploading thousands of other records (or records dated far
-- ahead) pushed the other doors' refusals out of what was read, and the site's badge lockout with
-- them. Filled from the bodies of the records stored before. A body may hold the JSON escape
-- \u0000 in its detail (a record's text is the edge's, stored as sent), which jsonb refuses: it
-- is read as \ufffd here (the same length; claim_lockout is never such a string), or one such
-- record stopped every hub process at this upgrade.
ALTER TABLE access_records ADD COLUMN counted TEXT NOT NULL DEFAULT '';
UPDATE access_records SET counted = replace(body, '\u0000', '\ufffd')::jsonb #>> '{detail,claim_lockout}'
    WHERE kind = 'decision'
      AND replace(body, '\u0000', '\ufffd')::jsonb #>> '{detail,claim_lockout}' IN ('refused', 'admitted');
CREATE INDEX access_records_counted ON access_records (appid, at) WHERE counted <> '';
