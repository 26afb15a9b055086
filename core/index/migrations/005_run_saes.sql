-- schema 5: SAE features indexed as units in the same pass as the neurons.
-- run_saes: one row per SAE of a run (`neuroboard extract --sae PATH`, repeatable), numbered 1.. within the run.
-- The per-unit tables (unit_stats, top_examples, intervals, interval_samples) hold SAE s's features with
-- layer = -s (a layer is never negative) and unit = the feature's index; neurons keep layer >= 0.
-- quality: the SAE's held-out quality numbers (FVU, L0, dead share, CE recovered, KL) when known, else NULL.
-- umap: the feature map (2-D UMAP of decoder directions), filled once per SAE on demand, NULL until then.
CREATE TABLE run_saes (
    run_id      INTEGER NOT NULL,
    sae_id      INTEGER NOT NULL,
    name        TEXT NOT NULL,
    path        TEXT NOT NULL,
    site        TEXT NOT NULL,
    out_site    TEXT,
    d_in        INTEGER NOT NULL,
    d_sae       INTEGER NOT NULL,
    activation  TEXT NOT NULL,
    k           INTEGER,
    format      TEXT,
    quality     JSON,
    umap        FLOAT[],
    PRIMARY KEY (run_id, sae_id)
);
