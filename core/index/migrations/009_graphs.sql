-- schema 9: attribution graphs (`neuroboard graph --db`). One row per graph, written once: the model, the
-- transcoder set (its folder and scan), the prompt, how it was made (config: targets, logit choice, feature limit,
-- thresholds, timings), its replacement and completeness scores, the graph file Neuronpedia and circuit-tracer's
-- viewer read (wire), and `kept`: a safetensors blob with the kept nodes' ids (in wire order) and the adjacency
-- among them (every edge between kept nodes, not only the kept edges), which intervention predictions read.
CREATE TABLE graphs (
    graph_id     INTEGER PRIMARY KEY,
    model_id     INTEGER NOT NULL,
    transcoders  TEXT NOT NULL,
    scan         TEXT NOT NULL,
    prompt       TEXT NOT NULL,
    config       JSON NOT NULL,
    scores       JSON NOT NULL,
    wire         JSON NOT NULL,
    kept         BLOB NOT NULL,
    created_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);
