"""Pure builders for comparing models: the CKA layer-similarity heatmap (no streamlit)."""

from __future__ import annotations

import numpy as np

from dashboard.render import svg


def depth_label(block: int, n_layers: int) -> str:
    """'block (relative depth %)', the relative depth of block b of L being (b + 1) / L."""
    return f"{block} ({round(100 * (block + 1) / n_layers)}%)"


def cka_html(res: dict) -> str:
    """An L_A × L_B heatmap of core.geometry.cka.CKAResult.as_dict(): rows model A's blocks, columns model B's,
    both labelled with their relative depth; each row's best match marked ●; 0 (white) to 1 (blue)."""
    v = np.asarray(res["cka"], np.float64)
    La, Lb = v.shape
    rows = [depth_label(i, La) for i in range(La)]
    cols = [f"{round(100 * (j + 1) / Lb)}" for j in range(Lb)]
    tips = np.array([[f"{res['a']} block {i} ({round(100 * (i + 1) / La)}% deep) vs {res['b']} block {j} "
                      f"({round(100 * (j + 1) / Lb)}% deep): CKA {v[i, j]:.3f}" for j in range(Lb)]
                     for i in range(La)], dtype=object)
    text = np.full(v.shape, "", dtype=object)
    for i, j in enumerate(res["best"]):
        text[i, j] = "●"
    title = (f"{res['kind']} CKA of block outputs ({res['rep']} token, {res['prompts']} prompts of {res['set']}): "
             f"rows {res['a']}, columns {res['b']} (relative depth %); ● each row's best match")
    return svg.grid(v, row_labels=rows, col_labels=cols, tips=tips, text=text, vmin=0.0, vmax=1.0, title=title,
                    cell=18)
