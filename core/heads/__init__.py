"""Attention heads: what each one does.

  roles     pattern role scores (previous/current token, local, sink, entropy, duplicate, induction) on probes;
            the OV circuit's copying score from the weights
  ablation  each head's effect on the next-token loss when zeroed or mean-replaced (prefix replayed)
  config    HeadsConfig: the settings of `neuroboard heads`
  score     score_heads: every head of a model scored into the index
"""
