"""What every page shares.

  frame   sidebar choosers (index, model, run) kept in the URL; url_widget; guards for a busy or missing index
  params  URL query params <-> page state, with friendly fallbacks (pure)
"""
