"""Pure figure and HTML builders: data in, go.Figure or escaped HTML out; no streamlit import.

  units   a unit's exact activation histogram, its logit-effect histogram
  lens    lens grid, per-depth lines, target chart, residual-norm heatmap, 2-D scatter
  heads   role maps (clickable), top-heads table, attention-pattern heatmap and token view
  tokens  token spans coloured by activation (every token HTML-escaped), example blocks
"""
