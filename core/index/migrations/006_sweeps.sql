-- schema 6: steering sweeps (`neuroboard sweep`): a layer × α grid of a direction over held-out prompts.
-- config: the SweepConfig and how the direction was made (with its quality); result: the grids (behaviour score,
-- side-effect KL, fluency perplexity: layer × α), each prompt's score per cell, and per layer the prompts'
-- steerability slopes and the share that is anti-steerable. One row per sweep, written once when it completes.
CREATE TABLE sweeps (
    sweep_id    INTEGER PRIMARY KEY,
    model_id    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    config      JSON NOT NULL,
    result      JSON NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT current_timestamp
);
