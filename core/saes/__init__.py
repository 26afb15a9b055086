"""Sparse autoencoders and transcoders: one SAE object, its file formats, training, quality.

  sae       the SAE object (encode/decode for ReLU, TopK, BatchTopK, JumpReLU; normalisation; transcoders) and its
            check against a model's site
  formats   one loader per format (SAELens v6 and pre-6, sparsify, Gemma Scope) and savers (SAELens, sparsify)
  files     weight files read safely: pickles refused, safetensors errors in one line
  transcoders  transcoder sets (one transcoder per layer, mlp_in -> mlp_out) in circuit-tracer's folder format
  acts      a site's activations streamed from the model, the held-out split, the shuffling buffer
  trainer   TopKTrainer: a TopK SAE / transcoder's parameters and one optimisation step (Gao et al., as sparsify)
  train     `neuroboard train-sae`: TrainSAEConfig, activations streamed or cached into the trainer (or semi-NMF),
            held-out quality, saving
  train_transcoders  a transcoder set: one TopK transcoder per layer, every layer fed from the same passes
  snmf      semi-NMF of a layer's MLP activations (features as sparse combinations of co-firing neurons)
  quality   FVU, L0, dead latents, CE loss recovered, KL on held-out tokens
  set_quality  a transcoder set's quality per layer and as a replacement model
  features  SAE features as units (FeatureSource), nearest features, head attribution, the feature map
  query     `neuroboard features` and `neuroboard sae-eval`
"""
