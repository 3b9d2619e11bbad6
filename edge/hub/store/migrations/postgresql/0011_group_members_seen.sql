-- The groups each person has ever been in (edge/hub/store/sql.py, sync_page): a sync filtered by
-- groups sends a person outside them as a deletion only when they were once in one of them, so a
-- door's key learns no other person's id. Persons changed before this table: group '' (any), so
-- an edge that held one still hears of their deletion (sql.SEEN_BEFORE_KEPT, the same words).
CREATE TABLE group_members_seen (
    appid TEXT NOT NULL, group_id TEXT NOT NULL, person_id TEXT NOT NULL,
    PRIMARY KEY (appid, person_id, group_id)
);
INSERT INTO group_members_seen (appid, group_id, person_id) SELECT DISTINCT appid, '', person_id
    FROM changes WHERE kind <> 'rules' ON CONFLICT DO NOTHING;
