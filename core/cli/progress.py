"""The commands' one pattern: work with a progress bar on stderr, then the result on stdout (JSON with --json, else
text).

    run_and_print(a, compute, text, desc)  compute(on_progress) under a bar (none with --no-progress), then emit
    emit(a, out, text)                     `out` as JSON with --json, else text(out) prints it; exit status 0
    Bar, Stages                            tqdm bars created at the first update (nothing prints when disabled)
    sae_steps(bar)                         the SAE trainers' progress (tokens, FVU, L0, dead share) on a bar
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


class Bar:
    """One tqdm bar on stderr; call it (or .update) with (done, total, **postfix)."""

    def __init__(self, enabled: bool, desc: str, unit: str = "it", unit_scale: bool = False) -> None:
        self.enabled, self.desc, self.unit, self.unit_scale = enabled, desc, unit, unit_scale
        self.bar = None

    def update(self, done: int, total: int, **postfix) -> None:
        """Move to `done` of `total` (a resumed job starts at its first `done`); `postfix` shows beside it."""
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit=self.unit, unit_scale=self.unit_scale, desc=self.desc,
                            file=sys.stderr)
        if postfix:
            self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(done - self.bar.n)

    __call__ = update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Stages:
    """One bar per stage of a job (`prefix` + the stage's name), the last closed when the next begins; call it with
    (stage, done, total)."""

    def __init__(self, enabled: bool, prefix: str = "", unit: str = "it") -> None:
        self.enabled, self.prefix, self.unit = enabled, prefix, unit
        self.bars: dict[str, Bar] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.bars:
            self.close()
            self.bars[stage] = Bar(self.enabled, f"{self.prefix}{stage}", unit=self.unit)
        self.bars[stage].update(done, total)

    def close(self) -> None:
        for b in self.bars.values():
            b.close()

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def sae_steps(bar: Bar) -> Callable:
    """An SAE or transcoder trainer's on_step (core.saes.train's steps) drawn on `bar`, with FVU, L0 and the share of
    dead latents beside it."""
    return lambda s: bar(s.tokens, s.target, fvu=f"{s.fvu:.3f}", l0=f"{s.l0:.1f}", dead=f"{100 * s.dead_frac:.1f}%")


def emit(a, out: Any, text: Callable[[Any], None], as_json: Callable[[Any], Any] | None = None) -> int:
    """The command's result on stdout: with --json one JSON document of `out` (or of `as_json(out)`; NumPy scalars
    as numbers, other values JSON lacks, such as dates, as strings), else `text(out)` prints it for a person. Exit
    status 0."""
    if getattr(a, "json", False):
        print(json.dumps(as_json(out) if as_json else out, default=_plain))
    else:
        text(out)
    return 0


def _plain(x):
    return x.item() if hasattr(x, "item") and getattr(x, "ndim", None) == 0 else str(x)


def run_and_print(a, compute: Callable[[Callable], Any], text: Callable[[Any], None], desc: str, *,
                  stages: bool = False, as_json: Callable[[Any], Any] | None = None, **bar) -> int:
    """`compute(on_progress)` with a progress bar on stderr (none with --no-progress): a Bar(desc, **bar) called
    with (done, total, **postfix), or with stages=True a Stages(desc, **bar) called with (stage, done, total); the
    bar is closed before emit prints the result."""
    enabled = not getattr(a, "no_progress", False)
    with Stages(enabled, desc, **bar) if stages else Bar(enabled, desc, **bar) as on_progress:
        out = compute(on_progress)
    return emit(a, out, text, as_json)
