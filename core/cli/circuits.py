"""The attribution-graph commands: graph, graph-intervene (printing only; core.circuits computes)."""

from __future__ import annotations

from core.circuits.intervene_run import GraphInterveneConfig
from core.circuits.run import GraphConfig
from core.cli.args import config_from
from core.cli.progress import emit, run_and_print

PARSERS = [("graph", GraphConfig,
            "the attribution graph of a prompt through a transcoder set (circuit-tracer's method), written as the "
            "graph file Neuronpedia and circuit-tracer's viewer read", "print a summary of the graph as one JSON "
            "object", True),
           ("graph-intervene", GraphInterveneConfig,
            "ablate, scale or steer nodes of an attribution graph: the target logit's change the graph predicts beside "
            "the change measured in its frozen replacement model and in the real model", "print the result as one "
            "JSON object", False)]


def cmd_graph(a) -> int:
    from core.circuits.run import make_graph

    cfg = config_from(a, GraphConfig)
    return run_and_print(a, lambda bar: make_graph(cfg, on_progress=bar), _print, "graph", unit="batch")


def _print(s: dict) -> None:
    top = ", ".join(f"{t['token']!r} {t['prob']:.3f}" for t in s["targets"])
    print(f"{s['out']}: {len(s['prompt_tokens'])} tokens, targets {top}")
    print(f"{s['active_features']} active features, {s['feature_nodes']} attributed; kept {s['kept_nodes']} nodes "
          f"and {s['links']} links; replacement score {s['replacement_score']:.3f}, completeness "
          f"{s['completeness_score']:.3f}; {s['seconds']:.1f} s")
    if s["graph_id"] is not None:
        print(f"stored as graph {s['graph_id']}")


def cmd_graph_intervene(a) -> int:
    from core.circuits.intervene_run import describe, run_intervention

    return emit(a, run_intervention(config_from(a, GraphInterveneConfig)), lambda out: print("\n".join(describe(out))))


COMMANDS = {"graph": cmd_graph, "graph-intervene": cmd_graph_intervene}
