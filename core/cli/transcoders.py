"""The transcoder-set command: train-transcoders (printing only; core.saes.train_transcoders computes)."""

from __future__ import annotations

from core.cli.args import config_from
from core.cli.progress import run_and_print, sae_steps
from core.saes.train_transcoders import TrainTranscodersConfig

PARSERS = [("train-transcoders", TrainTranscodersConfig,
            "train a TopK transcoder for every chosen layer (MLP input -> MLP output) from the same forward passes, "
            "saved as a circuit-tracer transcoder set", "print the report (per-layer and replacement-model quality "
            "on held-out tokens) as one JSON object", True)]


def cmd_train_transcoders(a) -> int:
    from core.saes.train_transcoders import train_transcoders

    cfg = config_from(a, TrainTranscodersConfig)
    return run_and_print(a, lambda bar: train_transcoders(cfg, on_step=sae_steps(bar)), _print_report,
                         f"transcoders {cfg.layers}", unit="tok", unit_scale=True)


def _print_report(report: dict) -> None:
    q = report["quality"]
    print(f"{len(report['layers'])} transcoders of {report['latents']} latents, k={report['k']}, {report['tokens']} "
          f"tokens each at {report['tokens_per_s']} tok/s -> {report['out']}")
    print(f"replacement model, every layer replaced ({q['tokens']} held-out tokens): CE recovered "
          f"{q['ce_recovered']:.3f}, KL {q['kl']:.4f}")
    for L, n in q["layers"].items():
        print(f"  layer {L:>3}: FVU {n['fvu']:.4f}, L0 {n['l0']:.1f}, dead {100 * n['dead_frac']:.1f}%")


COMMANDS = {"train-transcoders": cmd_train_transcoders}
