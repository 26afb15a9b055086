"""Interventions on a loaded model, every one an edit through core.model.intervene (never a hook of its own).

  patching  activation patching (resid / attn / mlp layer × position, heads layer × head, normalised logit
            difference), direction patches with random-direction controls, back-patching (source × target blocks)
"""
