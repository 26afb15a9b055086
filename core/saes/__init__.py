"""Sparse autoencoders and transcoders: one SAE object, its file formats, training, quality.

  sae       the SAE object (encode/decode for ReLU, TopK, BatchTopK, JumpReLU; normalisation; transcoders) and its
            check against a model's site
  formats   one loader per format (SAELens v6 and pre-6, sparsify, Gemma Scope) and savers (SAELens, sparsify)
  transcoders  transcoder sets (one transcoder per layer, mlp_in -> mlp_out) in circuit-tracer's folder format
  acts      a site's activations streamed from the model, the held-out split, the shuffling buffer
  train     TopK SAE / transcoder training (Gao et al., as sparsify runs it)
  quality   FVU, L0, dead latents, CE loss recovered, KL on held-out tokens
"""
