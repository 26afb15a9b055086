"""Units (MLP neurons, SAE features) and what each did over a corpus, in one pass.

  sources        UnitSource protocol (gather from the index, live activations, output direction); NeuronSource
  kinds          source(kind): the unit source for 'neuron' or 'feature:<SAE path>'
  config         ExtractConfig (the settings of `neuroboard extract`), parse_layers, ExtractError
  extract        the one-pass pipeline: corpus -> model (edits fold activations into reducers) -> index
  forward        the extraction forward pass: a chunk's windows through the model, folded into the reducers
  run_state      an extraction run's state: opened or resumed, chunks committed, checkpoints, results published
  shards         extraction on Ray: shards of chunks as tasks, merged in corpus order into one index
  reduce         LayerReducer: exact streaming stats, histogram, top-K with contexts, interval reservoirs
  kernels        the reducer's tensor steps in torch: priorities, top-K and reservoir merges, bin doubling
  fused          the same steps as one compiled pass (fused.c), the torch kernels its fallback
  intervals      interval samples from the reservoirs, with a per-interval exactness certificate
  logit_effects  a unit's direct effect on the logits through the final norm's gain and the unembedding
  live           a unit's activations and a layer's attention patterns recomputed for the pages
  match          matching units across two unit sets (activation correlation, decoder cosine)
"""
