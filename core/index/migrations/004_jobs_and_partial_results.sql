-- schema 4: jobs (long work in progress, shown on Home) and per-unit results that cover part of a running run.
-- jobs: one row per job a command started or queued (`neuroboard demo` queues its extractions and head scorings);
-- progress `done` of `total` in `unit`; status waiting | running | done | failed; `detail` the error of a failed one.
CREATE TABLE jobs (
    job_id      INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    done        DOUBLE NOT NULL DEFAULT 0,
    total       DOUBLE,
    unit        TEXT,
    detail      TEXT,
    created_at  TIMESTAMP DEFAULT current_timestamp,
    updated_at  TIMESTAMP DEFAULT current_timestamp
);
-- runs.results_tokens: how many tokens the stored per-unit results cover (NULL: none yet). A running run can
-- publish results early (`--preview-tokens`); a complete run's results cover all its tokens.
ALTER TABLE runs ADD COLUMN results_tokens BIGINT;
UPDATE runs SET results_tokens = tokens_done WHERE status = 'complete';
