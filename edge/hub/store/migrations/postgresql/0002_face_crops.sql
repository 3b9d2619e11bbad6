-- The aligned face crops, sealed by the hub (edge/hub/face_crops.py), for `hub reembed`:
-- they go with their face.
CREATE TABLE face_crops (
    face_id TEXT PRIMARY KEY REFERENCES faces (face_id) ON DELETE CASCADE, crop BYTEA NOT NULL
);
