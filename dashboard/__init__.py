"""The Streamlit dashboard: `app.py` is the frame (page config + st.navigation over app_pages/).

  render     pure builders, data -> go.Figure or escaped HTML (no streamlit import: exports reuse them)
  views      pure reads for pages: what an index offers (catalog), what a unit page shows (units)
  cache      Streamlit cache layers over core/ and views/: models, unit views, lens results, head scores
  shell      what every page shares: sidebar (index, model, run), URL params, guards for a busy or missing index
  app_pages  one module per page, plus unit_body (the body every unit page lays out)
  browser    driving the served dashboard from headless Chromium (tests and bench/pages.py)
"""
