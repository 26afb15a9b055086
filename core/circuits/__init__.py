"""Attribution graphs of a prompt ("Circuit Tracing", Ameisen et al. 2025, as the circuit-tracer library runs it):
how transcoder features, reconstruction errors and token embeddings connect into the model's next-token logits.

  prompt       the graph's tokens (a special token at position 0) and target tokens; GraphError, its one-line error
  replacement  the local replacement model: attention patterns and norm scales frozen as edits through
               core.model.intervene, MLPs replaced by transcoders plus error terms
  attribute    direct effects A[target, source] from batched backward passes; `attribute()` builds a Graph
  graph        the Graph object; node influence, pruning and the replacement and completeness scores
  wire         the JSON file Neuronpedia's graph page and circuit-tracer's viewer read, written and read back
  nodes        a graph's nodes and adjacency as one table, from a Graph, a stored graph or a graph file
  labels       each feature node's label without a forward pass: explanation or token list, what it writes, its page
  passes       measuring an edit: the frozen replacement model by value (and linearised) and the real model, batched
  interventions  zero, scale or steer nodes: the graph's path-sum prediction beside the measured changes; the table
  intervene_run  `neuroboard graph-intervene`: its config, inputs (graph file or index), checks and output
  explore      a stored graph as a reader explores it: strongest paths, a node's edges, pinned nodes and supernodes
"""
