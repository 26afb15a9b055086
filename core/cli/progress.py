"""The command line's progress bars: tqdm on stderr, created at the first update (nothing prints when disabled)."""

from __future__ import annotations

import sys


class Bar:
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

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
