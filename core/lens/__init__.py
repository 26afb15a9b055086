"""What the model would predict after each block.

  logit  Stream (one pass: every block's output and the logits), lens/lens_of (logit lens, or tuned through a
         translator), trajectory
  tuned  TunedLens (an affine translator per block), training and held-out evaluation
  store  where trained lenses live ($NEUROBOARD_CACHE/lenses/<model>/), save and load (safetensors)
  query  LensQuery and lens_json: `neuroboard lens`
"""
