-- A findings file (separate from every index: the dashboard writes only here). One row per finding: the view's URL
-- and page with its parameters, a title and note, the data its figures showed (snapshot, JSON) and how to
-- recompute it (manifest, JSON). `position` orders the list (and the tour).
CREATE TABLE findings (
    finding_id INTEGER PRIMARY KEY,
    position DOUBLE NOT NULL,
    title VARCHAR NOT NULL,
    note VARCHAR NOT NULL DEFAULT '',
    url VARCHAR NOT NULL,
    page VARCHAR NOT NULL,
    params VARCHAR NOT NULL,
    snapshot VARCHAR NOT NULL,
    manifest VARCHAR NOT NULL,
    created_at TIMESTAMP DEFAULT current_timestamp,
    updated_at TIMESTAMP DEFAULT current_timestamp
);
