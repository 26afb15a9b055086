"""Automatic interpretation: explanations of neurons and SAE features written by a language model from the index's
examples, and scored (detection, fuzzing) against held-out windows, with another unit's explanation as a control.

Modules: `prompts` (explainer and judge prompts, the example split, parsing), `scoring` (metrics, control pairs),
`backends` (the built-in chat model, an OpenAI-compatible endpoint).
"""
