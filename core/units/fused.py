"""A compiled one-pass kernel for the reducers (core/units/fused.c), with the pure-torch path as its fallback.

The kernel computes, in one pass over a layer's (n, d) activations split by units over the torch threads: the
exact histogram increments, the top-K candidates (activation >= the unit's K-th kept value) and the exact reservoir
candidates (activation > 0 and priority <= its bin's limit). The torch path computes the same things in several
passes (prefilter masks, nonzero, gathers). Both give identical reducer state (tests/core/units/test_fused.py).

It is compiled once per machine with the system C compiler (`cc -O3 -march=native -fopenmp`, no fast-math) into
$NEUROBOARD_CACHE/ext/, keyed by the source, the flags and the CPU. Without a compiler, or with NEUROBOARD_FUSED=0,
the torch path runs: slower, same numbers.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
from functools import cache
from importlib.resources import files
from pathlib import Path

import torch

log = logging.getLogger(__name__)
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-fast-math", "-fopenmp", "-shared", "-fPIC"]
ENV = "NEUROBOARD_FUSED"


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        return next((line for line in text.splitlines() if line.startswith("flags")), platform.processor())
    except OSError:
        return platform.processor()


def _build(src: str, out: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise OSError("no C compiler (cc/gcc) found")
    out.parent.mkdir(parents=True, exist_ok=True)
    c_file = out.with_suffix(f".{os.getpid()}.c")
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    c_file.write_text(src)
    try:
        subprocess.run([cc, *FLAGS, str(c_file), "-o", str(tmp), "-lm"], check=True, capture_output=True, text=True)
        os.replace(tmp, out)
    finally:
        c_file.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


@cache
def library():
    """The loaded kernel, or None (no compiler, a failed build, or NEUROBOARD_FUSED=0): the torch path runs."""
    if os.environ.get(ENV, "1") == "0":
        return None
    from core.model.load import cache_dir

    src = files("core.units").joinpath("fused.c").read_text(encoding="utf-8")
    key = hashlib.sha256("\0".join([src, *FLAGS, _cpu()]).encode()).hexdigest()[:16]
    path = cache_dir() / "ext" / f"nb_fused-{key}.so"
    try:
        if not path.exists():
            _build(src, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        log.warning("neuroboard: the fused reducer kernel is unavailable (%s); using the slower torch path",
                    detail.strip().splitlines()[-1] if detail.strip() else type(e).__name__)
        return None
    lib.nb_fused.restype = ctypes.c_int
    return lib


def _p(t: torch.Tensor):
    return ctypes.c_void_p(t.data_ptr())


def fused_pass(acts: torch.Tensor, thash: torch.Tensor, uhash: torch.Tensor, scale: torch.Tensor, F: int,
               hist: torch.Tensor, top_thr: torch.Tensor, tau: torch.Tensor, cap: int):
    """Run the kernel (hist updated in place); returns (top candidates (flat i*d+u) or None on overflow,
    reservoir candidates (flat idx, prio, group) or None on overflow). acts (n, d) float32 contiguous."""
    lib = library()
    n, d = acts.shape
    T = max(1, min(torch.get_num_threads(), d))
    top_idx = torch.empty(T * cap, dtype=torch.int64)
    res_idx = torch.empty(T * cap, dtype=torch.int64)
    res_prio = torch.empty(T * cap, dtype=torch.int32)
    res_grp = torch.empty(T * cap, dtype=torch.int64)
    top_cnt = torch.zeros(T, dtype=torch.int64)
    res_cnt = torch.zeros(T, dtype=torch.int64)
    bad = lib.nb_fused(_p(acts), ctypes.c_int64(n), ctypes.c_int64(d), _p(thash), _p(uhash), _p(scale),
                       ctypes.c_int64(F), _p(hist), _p(top_thr), _p(tau), ctypes.c_int(T), ctypes.c_int64(cap),
                       _p(top_idx), _p(top_cnt), _p(res_idx), _p(res_prio), _p(res_grp), _p(res_cnt))
    if bad:
        raise ValueError("NaN activations: the model produced NaN at this layer")

    def gather(cnt, *bufs):
        if int(cnt.max()) > cap:
            return None
        keep = torch.cat([torch.arange(t * cap, t * cap + int(cnt[t])) for t in range(T)])
        return tuple(b[keep] for b in bufs)

    return gather(top_cnt, top_idx), gather(res_cnt, res_idx, res_prio, res_grp)
