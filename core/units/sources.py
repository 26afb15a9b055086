"""Unit sources: everything a unit page shows, for any kind of unit, read from the index in four queries.

A unit page (an MLP neuron, an SAE feature) needs the same things of every unit: summary stats, an exact histogram,
top examples and interval samples with their token contexts, the activation on any token sequence (live), and an
output direction in the residual stream (for logit effects). `UnitSource` names those; `NeuronSource` answers them
for MLP neurons from the tables written by core.units.extract, core.saes.features.FeatureSource for SAE features,
and core.units.kinds.source picks one by kind. The page layout (dashboard/app_pages/unit_body.py) only talks to a
source, so a new kind of unit is a new source, not a new page.

Speed: `gather` costs four queries whatever k is (stats, the example list, their contexts in one join, vocab from
the caller's cache), so a page read stays in milliseconds on multi-million-token indexes (bench/pages.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from core.index import queries

if TYPE_CHECKING:  # torch is imported where a model runs, not to read the index
    import torch


@dataclass
class Example:
    doc_id: int
    position: int
    activation: float
    seq: list[int]
    """Token ids the model saw for this example: from its window's start through the last shown token."""
    first_shown: int
    """Index into `seq` of the first shown token (context before the example's token, at most `window`)."""
    focus: int
    """Index into `seq` of the example's token."""
    context: list[float] | None = None
    """Stored activation at positions focus-W..focus+W (NaN outside the window), or None if not indexed."""

    def shown_ids(self) -> list[int]:
        return self.seq[self.first_shown:]

    def shown_values(self, live=None) -> list[float]:
        """The unit's activation on each shown token (seq[first_shown:]): from the stored context when the index has
        it, else from `live` (a recomputation over seq), else NaN except the example's own token."""
        n = len(self.seq) - self.first_shown
        if self.context is not None:
            W = (len(self.context) - 1) // 2
            return [float(self.context[W + q - self.focus]) if abs(q - self.focus) <= W else float("nan")
                    for q in range(self.first_shown, len(self.seq))]
        if live is not None:
            return [float(x) for x in live[self.first_shown:]]
        out = [float("nan")] * n
        out[self.focus - self.first_shown] = self.activation
        return out


@dataclass
class UnitView:
    run: queries.RunInfo
    layer: int
    unit: int
    stats: dict
    top: list[Example]
    intervals: list[dict]
    """[{interval, lo, hi, frac_est, exact, examples: [Example]}], by interval ascending."""


class UnitSource(Protocol):
    kind: str

    def gather(self, con, run_id: int, layer: int, unit: int, k: int, window: int) -> UnitView: ...

    def activations(self, lm, layer: int, unit: int, seqs: list[list[int]]) -> list[np.ndarray]: ...

    def direction(self, lm, layer: int, unit: int) -> torch.Tensor: ...


def _contexts(con, run: queries.RunInfo, picks: list[tuple], window: int) -> list[Example]:
    """picks: (doc_id, position, activation, context) rows -> Examples with their window's tokens, in one query."""
    if not picks:
        return []
    T = int(run.config["context_len"])
    spans = [(i, d, (p // T) * T, min(p + window, (p // T) * T + T - 1)) for i, (d, p, *_) in enumerate(picks)]
    seqs = queries.span_tokens(con, run.run_id, spans)
    out = []
    for i, (doc, pos, act, ctx) in enumerate(picks):
        ws = spans[i][2]
        focus = pos - ws
        out.append(Example(doc_id=doc, position=pos, activation=float(act), seq=seqs.get(i, []),
                           first_shown=max(0, focus - window), focus=focus, context=ctx))
    return out


def unit_view(con, run: queries.RunInfo, layer: int, unit: int, group: int, k: int, window: int) -> UnitView:
    """A checked unit's view: its record from the index (unit group `group`: a layer, or -s for SAE s) with the
    examples' token windows; `layer` is what the view reports (the layer, or the SAE's number)."""
    stats, rows, ivs = queries.unit_record(con, run.run_id, group, unit, k)
    examples = _contexts(con, run, [r[2:] for r in rows], window)
    by: dict[int, list[Example]] = {}
    for (i, *_), ex in zip(rows, examples, strict=True):
        by.setdefault(i, []).append(ex)
    intervals = [{"interval": i, "lo": lo, "hi": hi, "frac_est": f, "exact": ex, "examples": by.get(i, [])}
                 for i, lo, hi, f, ex in ivs]
    return UnitView(run=run, layer=layer, unit=unit, stats=stats, top=by.get(-1, []), intervals=intervals)


@dataclass
class NeuronSource:
    """MLP neurons: the input of each block's down projection, as indexed by core.units.extract."""

    kind: str = "neuron"

    def gather(self, con, run_id: int, layer: int, unit: int, k: int = 10, window: int = 12) -> UnitView:
        """Raises queries.QueryError for an unknown run / layer / unit or a run not complete."""
        run = queries.check_unit(con, run_id, layer, unit)
        return unit_view(con, run, layer, unit, layer, k, window)

    def activations(self, lm, layer: int, unit: int, seqs: list[list[int]]) -> list[np.ndarray]:
        from core.units.live import unit_activations

        return unit_activations(lm, layer, unit, seqs)

    def direction(self, lm, layer: int, unit: int) -> torch.Tensor:
        from core.units.logit_effects import output_direction

        return output_direction(lm, layer, unit)

