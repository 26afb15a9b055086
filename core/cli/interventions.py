"""The intervention commands: steer, patch, backpatch (printing only; core.interventions computes)."""

from __future__ import annotations

from core.cli.args import config_from
from core.cli.progress import emit, run_and_print
from core.interventions.query import BackpatchQuery, PatchQuery, SteerQuery
from core.interventions.sweep import SweepConfig

PARSERS = [("steer", SteerQuery, "a prompt's continuation with a direction added after a block, beside the default",
            "print the result as one JSON object", False),
           ("patch", PatchQuery, "activation patching: resid/attn/mlp layer x position and heads layer x head grids",
            "print the grids as one JSON object", True),
           ("sweep", SweepConfig, "a layer x alpha steering grid over held-out prompts: behaviour, side effects, "
            "fluency; stored in --db for the steering page", "print the grids as one JSON object", True),
           ("backpatch", BackpatchQuery, "a later block's last-position output written into an earlier block",
            "print the source x target grids as one JSON object", True)]


def cmd_steer(a) -> int:
    from core.interventions.query import steer_json

    return emit(a, steer_json(config_from(a, SteerQuery)), _print_steer)


def _print_steer(out: dict) -> None:
    q = out["direction"]["quality"]
    print(("directional ablation at every layer and position" if out["mode"] == "ablate" else
           f"layer {out['layer']}, alpha {out['alpha']} x stream norm {out['stream_norm']:.4g}")
          + (f"; direction separation {q['separation']:.3f}, pair cosine {q['pair_cosine']:.3f}" if q else ""))
    print(f"default: {out['default']!r}\n{out['mode']}ed: {out['steered']!r}")
    print(f"sampled default: {out['sampled_default']!r}\nsampled steered: {out['sampled_steered']!r}")
    print(f"next-token KL {out['next_token_kl']:.4g}; gained: "
          + ", ".join(f"{t!r} {p0:.3f}->{p1:.3f}" for t, p0, p1 in out["gained"][:5]))


def _print_grids(out: dict) -> None:
    for k, v in out.items():
        if k == "direction_patch":
            print(f"along the direction at {v['site']}: {v['effect']:.3f} of the clean answer restored; "
                  f"{len(v['controls'])} random directions: mean {v['control_mean']:.3f}, largest |effect| "
                  f"{v['control_max']:.3f}")
        elif isinstance(v, list) and v and isinstance(v[0], list):
            print(f"{k}:")
            for i, row in enumerate(v):
                print(f"  {i:3d} " + " ".join(f"{x:7.3f}" if isinstance(x, float) else f"{x:7d}" for x in row))
        else:
            print(f"{k}: {v}")


def cmd_patch(a) -> int:
    from core.interventions.query import patch_json

    q = config_from(a, PatchQuery)
    return run_and_print(a, lambda bar: patch_json(q, on_layer=bar), _print_grids, "patch", unit="layer")


def cmd_backpatch(a) -> int:
    from core.interventions.query import backpatch_json

    q = config_from(a, BackpatchQuery)
    return run_and_print(a, lambda bar: backpatch_json(q, on_layer=bar), _print_grids, "backpatch", unit="layer")


def cmd_sweep(a) -> int:
    from core.interventions.sweep import run_sweep

    cfg = config_from(a, SweepConfig)
    return run_and_print(a, lambda bar: run_sweep(cfg, on_cell=bar), _print_sweep, "sweep", unit="cell")


def _print_sweep(out: dict) -> None:
    print(f"layers {out['layers']}, alphas {out['alphas']}, {len(out['prompts'])} prompts, {out['seconds']} s"
          + (f" -> sweep {out['sweep_id']}" if "sweep_id" in out else ""))
    for name in ("score", "kl", "ppl"):
        print(f"{name} (layer x alpha):")
        for L, row in zip(out["layers"], out[name], strict=True):
            print(f"  {L:3d} " + " ".join(f"{x:8.3f}" for x in row))
    print("anti-steerable share per layer: " + " ".join(f"{x:.2f}" for x in out["anti_steerable"]))


COMMANDS = {"steer": cmd_steer, "patch": cmd_patch, "backpatch": cmd_backpatch, "sweep": cmd_sweep}
