-- schema 8: stored activation-patching grids (core.interventions.patching.patch_grid), written by the demo for the
-- patching page's default prompt pair so its first visit reads them instead of computing every grid live. One row
-- per grid: kind resid_pre | attn_out | mlp_out (layer × position) or heads (layer × head); grid: its normalised
-- values, a list per layer; labels: the clean prompt's tokens (or the head numbers); clean_diff, corrupted_diff:
-- logit(answer) − logit(foil) on each prompt; provenance: the weights' SHA-256, the model's source and the package
-- versions the grids were computed with (JSON).
CREATE TABLE patch_grids (
    model_id    INTEGER NOT NULL,
    clean       TEXT NOT NULL,
    corrupted   TEXT NOT NULL,
    answer      TEXT NOT NULL,
    foil        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    grid        DOUBLE[][] NOT NULL,
    labels      TEXT[] NOT NULL,
    clean_diff  DOUBLE NOT NULL,
    corrupted_diff DOUBLE NOT NULL,
    provenance  JSON NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);
