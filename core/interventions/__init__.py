"""Interventions on a loaded model, every one an edit through core.model.intervene (never a hook of its own).

  directions  residual-stream directions: difference of means, PCA of paired differences or a logistic probe on a
              contrastive prompt set (with held-out separation and pair cosine), an SAE feature, a neuron, a file
  steer       α·ν_L·d̂ added after block L: default and steered continuations side by side, next-token shift
  ablate      directional ablation: the activation form (every write into the stream) and weight orthogonalisation
  patching    activation patching (resid / attn / mlp layer × position, heads layer × head, normalised logit
              difference), direction patches with random-direction controls, back-patching (source × target blocks)
  query       the config dataclasses and JSON of `neuroboard steer`, `patch`, `backpatch`
"""
