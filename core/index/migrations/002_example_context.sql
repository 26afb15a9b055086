-- schema 2: each unit's activation around its first top examples (runs.config ctx_examples, ctx_window).
-- context[j] is the activation at position (position - ctx_window + j) of the same window; NaN outside the window.
-- NULL for ranks >= ctx_examples and for runs made before schema 2.
ALTER TABLE top_examples ADD COLUMN context FLOAT[];
