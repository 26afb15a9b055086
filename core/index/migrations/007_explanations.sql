-- Explanations of units (neurons: layer = the layer; SAE features: layer = -sae_id, as in the unit tables), written
-- by `neuroboard explain`: the explanation (NULL when the reply was unparsed or the unit skipped), the prompt and
-- reply, the explainer and its settings (JSON), and the scores (JSON: detection and fuzzing metrics, and the control
-- scores with another unit's explanation), and the explanation's sentence embedding.
CREATE TABLE explanations (
    run_id      INTEGER NOT NULL,
    layer       INTEGER NOT NULL,
    unit        INTEGER NOT NULL,
    status      VARCHAR NOT NULL,       -- ok | unparsed | skipped
    explanation VARCHAR,
    reason      VARCHAR,
    prompt      VARCHAR NOT NULL,
    reply       VARCHAR,
    explainer   VARCHAR NOT NULL,
    settings    VARCHAR NOT NULL,
    scores      VARCHAR,
    embedding   FLOAT[],                -- all-MiniLM-L6-v2 of the explanation (unit norm), for search by meaning
    created_at  TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, layer, unit)
);
