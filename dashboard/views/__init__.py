"""Pure reads behind pages (no streamlit): each opens a cursor on the shared read-only connection.

  catalog  the served indexes, their runs and models, as frames for Home and the sidebar
  units    a unit's view (core.units.sources), layer tables, token search, shown values of an example
"""
