"""The transcoder-set command: train-transcoders (printing only; core.saes.train_transcoders computes)."""

from __future__ import annotations

import json

from core.cli.args import config_from
from core.cli.progress import Bar
from core.saes.train_transcoders import TrainTranscodersConfig

PARSERS = [("train-transcoders", TrainTranscodersConfig,
            "train a TopK transcoder for every chosen layer (MLP input -> MLP output) from the same forward passes, "
            "saved as a circuit-tracer transcoder set", "print the report (per-layer and replacement-model quality "
            "on held-out tokens) as one JSON object", True)]


def cmd_train_transcoders(a) -> int:
    from core.saes.train_transcoders import train_transcoders

    cfg = config_from(a, TrainTranscodersConfig)
    bar = Bar(not a.no_progress, f"transcoders {cfg.layers}", unit="tok", unit_scale=True)
    try:
        report = train_transcoders(cfg, on_step=lambda s: bar.update(s.tokens, s.target, fvu=f"{s.fvu:.3f}",
                                                                     l0=f"{s.l0:.1f}", dead=f"{100 * s.dead_frac:.1f}%"))
    finally:
        bar.close()
    if a.json:
        print(json.dumps(report))
        return 0
    q = report["quality"]
    print(f"{len(report['layers'])} transcoders of {report['latents']} latents, k={report['k']}, {report['tokens']} "
          f"tokens each at {report['tokens_per_s']} tok/s -> {report['out']}")
    print(f"replacement model, every layer replaced ({q['tokens']} held-out tokens): CE recovered "
          f"{q['ce_recovered']:.3f}, KL {q['kl']:.4f}")
    for L, n in q["layers"].items():
        print(f"  layer {L:>3}: FVU {n['fvu']:.4f}, L0 {n['l0']:.1f}, dead {100 * n['dead_frac']:.1f}%")
    return 0


COMMANDS = {"train-transcoders": cmd_train_transcoders}
