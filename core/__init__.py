"""neuroboard's computing side: everything the dashboard and the command line show is computed here, and nothing
here imports the UI. Subpackages by capability (each __init__ names its modules):

  model     load a causal LM; its parts by structure; sites by name; intervene (the only hooks); run; tokens
  data      corpora and their windows; labelled prompt sets (shipped as package data)
  index     the DuckDB index: migrations, writes, reads (every SQL statement of the project)
  units     what every unit did in one pass: unit sources, extract, reduce, intervals, logit effects, live values
  lens      logit and tuned lens, the lens store, the `lens` query
  heads     attention-head roles, head ablation, scoring a model's heads into the index
  geometry  residual-stream geometry, separation of labelled prompt sets per layer
  cli       the `neuroboard` command line (flags generated from the config dataclasses)
errors (the one-line UserError base) and demo (what `make demo` builds) sit at the top.
"""
