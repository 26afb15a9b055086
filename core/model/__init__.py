"""A loaded model and the one way to read or change what it computes.

  load       load_model: built-in name, GGUF file, local folder or hub id -> LoadedModel (GGUF weights cached)
  parts      ModelParts found by structure: blocks, attention, MLP, down projection, norms, heads; PartPaths override
  sites      Site: named places in a forward pass (ours <-> TransformerLens/SAELens <-> sparsify names)
  intervene  intervene({site: edit}): the only place hooks are registered; edit makers store/zero/fill/add/patch/
             project_out; stop_after and replay of an unchanged prefix
  run        pad_batch (right padding), max_positions/check_length (the context-length rule), forward_until, logits,
             softcap/unembed (final norm, output embedding, soft-capping), last_logits, decode
  tokens     tokenize, token_texts/vocab_strings (the token formatter), encode_prompt, token_id
"""
