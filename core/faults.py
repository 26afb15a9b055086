"""Fault injection for the fault matrix (tests/faults): with $NEUROBOARD_KILL_AT = 'POINT:N' the process kills
itself with SIGKILL the N-th time it passes `point(POINT)` — a crash at an exact moment (mid-batch, between a
chunk's writes and its commit, after the commit and before the checkpoint, mid-checkpoint, mid-finalize, mid
feature maps). Unset (always, outside those tests): one environment lookup per point."""

from __future__ import annotations

import os
import signal

ENV = "NEUROBOARD_KILL_AT"
_seen: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    where, _, nth = spec.partition(":")
    if where != name:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
