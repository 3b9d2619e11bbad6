-- How far the used single-use signatures have been forgotten (edge/hub/store/sql.py,
-- claim_signature): a signature valid no longer than that may have been used, and is refused. The
-- rows were deleted once past their validity and nothing kept: with the hub's clock stepped back
-- (an NTP correction, a VM snapshot restored) a captured signature was accepted a second time.
CREATE TABLE signatures_forgotten (id INTEGER PRIMARY KEY CHECK (id = 1), until DOUBLE PRECISION NOT NULL);
INSERT INTO signatures_forgotten (id, until) VALUES (1, 0);
