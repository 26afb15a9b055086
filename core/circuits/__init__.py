"""Attribution graphs of a prompt ("Circuit Tracing", Ameisen et al. 2025, as the circuit-tracer library runs it):
how transcoder features, reconstruction errors and token embeddings connect into the model's next-token logits.

  prompt       the graph's tokens (a special token at position 0) and target tokens; GraphError, its one-line error
  replacement  the local replacement model: attention patterns and norm scales frozen as edits through
               core.model.intervene, MLPs replaced by transcoders plus error terms
  attribute    direct effects A[target, source] from batched backward passes; `attribute()` builds a Graph
  graph        the Graph object; node influence, pruning and the replacement and completeness scores
  wire         the JSON file Neuronpedia's graph page and circuit-tracer's viewer read, written and read back
  explore      a stored graph as a reader explores it: strongest paths, a node's edges, pinned nodes and supernodes
"""
