"""Geometry of representations along depth.

  residual    one prompt's residual stream: norms, massive activations, how much each block moves the stream
  separation  labelled representations per layer: probe accuracy, cluster scores, centroid distance, 2-D views
"""
