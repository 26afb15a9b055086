"""dashboard.render.circuits: hostile token text and names stay text, nodes sized by influence, edges coloured by
sign, every node a link, the strongest paths underlaid, the subgraph's supernode boxes."""

import re

import numpy as np

from core.circuits import explore as ex
from dashboard.render import circuits as rc

EVIL = '<script>alert("x")</script>'


def doc() -> ex.GraphDoc:
    nodes = [{"node_id": "E_5_0", "feature_type": "embedding", "layer": "E", "ctx_idx": 0, "clerp": ""},
             {"node_id": "E_6_1", "feature_type": "embedding", "layer": "E", "ctx_idx": 1, "clerp": ""},
             {"node_id": "0_3_1", "feature_type": "cross layer transcoder", "layer": "0", "ctx_idx": 1,
              "clerp": EVIL, "influence": 0.1, "activation": 2.0},
             {"node_id": "0_4_1", "feature_type": "cross layer transcoder", "layer": "0", "ctx_idx": 1, "clerp": "",
              "influence": 0.9, "activation": 1.0},
             {"node_id": "2_7_1", "feature_type": "logit", "layer": "2", "ctx_idx": 1, "clerp": 'Output "<b>"',
              "token_prob": 0.6, "is_target_logit": True}]
    ids = [n["node_id"] for n in nodes]
    A = np.zeros((5, 5), np.float32)
    A[2, 1], A[3, 0], A[4, 2], A[4, 3] = 1.0, 0.5, 2.0, -1.0
    links = [{"source": ids[s], "target": ids[t], "weight": float(A[t, s])} for t, s in np.argwhere(A)]
    return ex.GraphDoc({"metadata": {"prompt_tokens": [EVIL, "</svg>"], "info": {"n_layers": 1}}, "nodes": nodes,
                        "links": links}, ids, A)


def test_graph_svg():
    d = doc()
    paths = ex.path_edges(ex.top_paths(d, "2_7_1", 2))
    html = rc.graph_svg(d, link=lambda x: f"circuits?node={x}", paths=paths, selected="0_3_1", pinned={"0_4_1"})
    assert "<script" not in html and html.count("</svg>") == 1 and "&lt;script&gt;" in html
    assert all(f'href="circuits?node={x}"' in html for x in d.ids)
    r = {x: float(m) for x, m in re.findall(r'node=([^"]+)" target="_self"><circle [^>]*r="([\d.]+)"', html)}
    assert r["0_3_1"] > r["0_4_1"]  # influence 0.1 (important) drawn larger than 0.9
    assert 'stroke="#d62728" stroke-width="2.5"' in html and 'stroke="#222"' in html  # selected, pinned
    assert html.count(f'stroke="{rc.PATH}"') >= 3  # legend + the path 1 -> 0_3_1 -> logit
    red = re.search(rf'<g stroke="{rc.NEG}"[^>]*>(.*?)</g>', html).group(1)  # negative edges are red
    assert "<title>0_4_1 → 2_7_1" in red and "0_3_1 → 2_7_1" not in red
    assert "<title>0_3_1 → 2_7_1" in re.search(rf'<g stroke="{rc.POS}"[^>]*>(.*?)</g>', html).group(1)
    feats = re.search(rf'<g fill="{rc.KIND_COLORS["feature"]}"[^>]*>(.*?)</g>', html).group(1)  # coloured by kind
    assert feats.count("<a href") == 2 and "node=2_7_1" not in feats  # the two features, not the logit


def test_subgraph_and_tables_escape():
    d = doc()
    sub = ex.subgraph(d, ["2_7_1"], [("a <b>", ["0_3_1", "0_4_1"])])
    html = rc.subgraph_svg(sub, d.tokens, link=lambda x: f"?node={x}")
    assert "<b>" not in html and "a &lt;b&gt;" in html and "subgraph of 2 units" in html
    e = rc.edges_html([("0_3_1", EVIL, 1.5)], lambda x: f"?node={x}", "incoming")
    assert "<script" not in e and "1.5" in e
    assert "replacement score <b>0.5</b>" in rc.scores_html({"replacement": 0.5, "completeness": 0.25})
