"""Streamlit cache layers (st.cache_resource / st.cache_data), shared by all sessions.

  models        loaded models (eager attention) and the URL's allow-list of model names
  units         unit views, vocabularies, logit effects, layer tables
  trajectories  one forward pass per (model, prompt) for lens and residual views; prompt-set metrics
  heads         stored head scores, live attention patterns
"""
