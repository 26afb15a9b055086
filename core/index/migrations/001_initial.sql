-- neuroboard index, schema 1: models, corpora, runs, tokens, per-unit results.
CREATE TABLE models (
    model_id    INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    source      TEXT NOT NULL,
    arch        TEXT,
    n_layers    INTEGER,
    d_model     INTEGER,
    d_mlp       INTEGER,
    vocab_size  INTEGER,
    created_at  TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE vocab (
    model_id    INTEGER NOT NULL,
    token_id    INTEGER NOT NULL,
    display     TEXT NOT NULL            -- the token as text, e.g. ' Paris' (special tokens as '<bos>')
);
CREATE TABLE corpora (
    corpus_id   INTEGER PRIMARY KEY,
    spec        TEXT NOT NULL UNIQUE     -- 'demo', a resolved path, or a dataset spec
);
CREATE TABLE documents (
    corpus_id   INTEGER NOT NULL,
    doc_id      INTEGER NOT NULL,        -- 0-based input order
    text        TEXT NOT NULL,
    sha         TEXT NOT NULL
);
CREATE TABLE runs (
    run_id      INTEGER PRIMARY KEY,
    model_id    INTEGER NOT NULL,
    corpus_id   INTEGER NOT NULL,
    config      JSON NOT NULL,           -- ExtractConfig as JSON
    layers      INTEGER[] NOT NULL,
    status      TEXT NOT NULL,           -- running | complete | failed
    tokens_done BIGINT NOT NULL DEFAULT 0,
    docs_done   INTEGER NOT NULL DEFAULT 0,
    tokens_target BIGINT,
    created_at  TIMESTAMP DEFAULT current_timestamp,
    updated_at  TIMESTAMP DEFAULT current_timestamp,
    error       TEXT
);
CREATE TABLE run_docs (
    run_id      INTEGER NOT NULL,
    doc_id      INTEGER NOT NULL,
    tok0        BIGINT NOT NULL,         -- global index of the document's first token in the run's token stream
    n_tokens    INTEGER NOT NULL         -- tokens indexed (a document may be cut at max_tokens)
);
CREATE TABLE tokens (
    run_id      INTEGER NOT NULL,
    doc_id      INTEGER NOT NULL,
    position    INTEGER NOT NULL,        -- 0-based position within the document's token ids
    token_id    INTEGER NOT NULL,
    counted     BOOLEAN NOT NULL         -- false for special tokens, which feed the model but no unit statistics
);
CREATE TABLE token_norms (
    run_id      INTEGER NOT NULL,
    doc_id      INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    norms       FLOAT[] NOT NULL         -- residual-stream L2 norm after each indexed layer, in runs.layers order
);
CREATE TABLE unit_stats (
    run_id      INTEGER NOT NULL,
    layer       INTEGER NOT NULL,
    unit        INTEGER NOT NULL,
    n_tokens    BIGINT NOT NULL,
    count_active BIGINT NOT NULL,        -- tokens with activation > 0
    density     DOUBLE NOT NULL,
    mean        DOUBLE NOT NULL,
    max         FLOAT NOT NULL,
    min         FLOAT NOT NULL,
    hist_exp    INTEGER NOT NULL,        -- bins: 2F of width 2^hist_exp/F over (-2^hist_exp, 2^hist_exp]
    hist        INTEGER[] NOT NULL
);
CREATE TABLE top_examples (
    run_id      INTEGER NOT NULL,
    layer       INTEGER NOT NULL,
    unit        INTEGER NOT NULL,
    rank        INTEGER NOT NULL,        -- 0 = highest activation
    doc_id      INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    activation  FLOAT NOT NULL
);
CREATE TABLE intervals (
    run_id      INTEGER NOT NULL,
    layer       INTEGER NOT NULL,
    unit        INTEGER NOT NULL,
    interval    INTEGER NOT NULL,        -- 0..9: [i*max/10, (i+1)*max/10)
    lo          DOUBLE NOT NULL,
    hi          DOUBLE NOT NULL,
    frac_est    DOUBLE NOT NULL,         -- share of active tokens in the interval, estimated from the histogram
    exact       BOOLEAN NOT NULL         -- sample proven equal to the exact uniform sample
);
CREATE TABLE interval_samples (
    run_id      INTEGER NOT NULL,
    layer       INTEGER NOT NULL,
    unit        INTEGER NOT NULL,
    interval    INTEGER NOT NULL,
    rank        INTEGER NOT NULL,
    doc_id      INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    activation  FLOAT NOT NULL
);
